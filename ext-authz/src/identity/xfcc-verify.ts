/**
 * Validation of a whole XFCC header before any element is believed.
 *
 * Envoy writes `URI=` and `DNS=` unquoted, so a certificate whose SAN holds
 * `,` `;` `=` or `"` can split or merge elements and make another element
 * look like "the client". Defences, each with its own deny reason:
 * - the element count is exactly what the topology writes (selectClientElement);
 * - every element carrying `Cert=` is decoded and its `Hash=`, `URI=`, `DNS=`
 *   and `Subject=` must all be that certificate's;
 * - a certificate whose SANs or subject hold an XFCC delimiter can never
 *   authenticate through XFCC (its element cannot be read back unambiguously).
 * Pure: the certificate decoder is passed in (the stage's bounded cache).
 */
import type { CertificateFacts, CacheEntry } from './certificate.js';
import { selectClientElement, type ForwardingMode, type XfccElement } from './xfcc.js';

export interface XfccRejection {
  readonly reason: string;
  readonly detail: string;
  /** Facts of the certificate the failure could be attributed to, when one decoded. */
  readonly facts?: CertificateFacts;
}

export interface VerifiedClient {
  readonly element: XfccElement;
  /** The client element's decoded certificate (undefined when it carries no `Cert=`). */
  readonly entry: CacheEntry | undefined;
}

export type CertificateLookup = (encodedPem: string, claimedHash: string) => CacheEntry;

/** `,` `;` `=` `"`: any of them in an unquoted XFCC value shifts the grammar. */
const UNQUOTED_DELIMITER = /[,;="]/;
/** Subject is quoted (RFC 2253 escapes `,` `;` inside it): only a quote, even escaped, can end the value early for some reader. */
const SUBJECT_HAZARD = /"/;

/** The first SAN or subject of `facts` that could not survive a round trip through XFCC, if any. */
export function unsafeXfccName(facts: CertificateFacts): string | undefined {
  const s = facts.sans;
  for (const list of [s.uri, s.dns, s.email, s.ip]) for (const v of list) if (UNQUOTED_DELIMITER.test(v)) return v;
  if (SUBJECT_HAZARD.test(facts.subject)) return facts.subject;
  return undefined;
}

function allIn(listed: readonly string[], actual: readonly string[]): boolean {
  for (const v of listed) if (!actual.includes(v)) return false;
  return true;
}

function clip(v: string): string {
  return v.length > 80 ? `${v.slice(0, 80)}…` : v;
}

/** Checks one element against its own certificate; undefined when it holds. */
function checkElement(e: XfccElement, index: number, lookup: CertificateLookup): { entry: CacheEntry | undefined; rejection?: XfccRejection } {
  const where = `XFCC element ${index + 1}`;
  if (e.hash !== '' && !/^[0-9a-fA-F]{64}$/.test(e.hash)) {
    return { entry: undefined, rejection: { reason: 'xfcc_hash_mismatch', detail: `${where}: Hash=${clip(e.hash)} is not a SHA-256 hex digest` } };
  }
  if (e.cert === '') {
    if (SUBJECT_HAZARD.test(e.subject)) return { entry: undefined, rejection: { reason: 'xfcc_unsafe_certificate', detail: `${where}: Subject= holds a quote` } };
    return { entry: undefined };
  }
  const entry = lookup(e.cert, e.hash);
  if (!entry.result.ok) return { entry, rejection: { reason: 'bad_certificate', detail: `${where} Cert: ${entry.result.error}` } };
  const facts = entry.result.value.facts;
  if (e.hash !== '' && e.hash.toLowerCase() !== facts.fingerprint) {
    return { entry, rejection: { reason: 'xfcc_hash_mismatch', detail: `${where}: Hash=${e.hash.slice(0, 64)} is not the SHA-256 of its Cert`, facts } };
  }
  const unsafe = unsafeXfccName(facts);
  if (unsafe !== undefined) {
    return { entry, rejection: { reason: 'xfcc_unsafe_certificate', detail: `${where}: certificate name "${clip(unsafe)}" holds an XFCC delimiter, so it cannot authenticate through XFCC`, facts } };
  }
  // URI=/DNS=/Subject= are what the proxy read from this same certificate; a value it does not hold means tampering.
  if (!allIn(e.uri, facts.sans.uri) || !allIn(e.dns, facts.sans.dns)) {
    return { entry, rejection: { reason: 'xfcc_san_mismatch', detail: `${where}: URI=/DNS= differ from its certificate's SANs`, facts } };
  }
  if (e.subject !== '' && e.subject !== facts.subject) {
    return { entry, rejection: { reason: 'xfcc_subject_mismatch', detail: `${where}: Subject= differs from its certificate's subject`, facts } };
  }
  return { entry };
}

/**
 * Validates every element and returns the client's. `lookup` decodes a
 * `Cert=` (cached); the client element's entry is returned so the caller
 * does not look it up twice.
 */
export function verifyXfcc(
  elements: readonly XfccElement[],
  mode: ForwardingMode,
  trustedHops: number,
  lookup: CertificateLookup,
): VerifiedClient | XfccRejection {
  const picked = selectClientElement(elements, mode, trustedHops);
  if ('error' in picked) return { reason: 'xfcc_element_count', detail: picked.error };
  let clientEntry: CacheEntry | undefined;
  for (let i = 0; i < elements.length; i++) {
    const e = elements[i]!;
    const r = checkElement(e, i, lookup);
    if (r.rejection !== undefined) return r.rejection;
    if (e === picked.element) clientEntry = r.entry;
  }
  return { element: picked.element, entry: clientEntry };
}

export function isRejection(v: VerifiedClient | XfccRejection): v is XfccRejection {
  return 'reason' in v;
}
