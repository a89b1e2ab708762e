/**
 * Parser for Envoy's `x-forwarded-client-cert` header (grammar: docs/contracts/xfcc.md#grammar).
 *
 * Grammar: elements separated by `,`; each element is `;`-separated
 * `key=value` pairs; keys are case-insensitive; a value may be double-quoted
 * (and then holds `,` `;` `=` freely, with `\"` for a quote). Cert, Chain and
 * Subject are always quoted by Envoy because the Subject contains commas.
 *
 * The parser never throws: every input yields either the elements or an
 * error saying what was wrong and where. It rejects control characters,
 * unbalanced quotes and a repeated single-valued key (two `Hash=` in one
 * element is ambiguous, so it is treated as an attack, not resolved).
 */

export interface XfccElement {
  /** URI SANs of the proxy that added this element (`By=`, repeatable). */
  readonly by: readonly string[];
  /** Hex SHA-256 of the client certificate's DER, as the proxy wrote it ('' when absent). */
  readonly hash: string;
  /** URL-encoded PEM of the client certificate, still encoded ('' when absent). */
  readonly cert: string;
  /** URL-encoded PEM chain, still encoded ('' when absent). */
  readonly chain: string;
  /** RFC 2253 subject exactly as Envoy wrote it between the quotes (no unescaping; '' when absent). */
  readonly subject: string;
  /** URI SANs (`URI=`, repeatable; Envoy writes one empty `URI=` when there is none, which is dropped). */
  readonly uri: readonly string[];
  /** DNS SANs (`DNS=`, repeatable). */
  readonly dns: readonly string[];
}

export type XfccParseResult =
  | { readonly ok: true; readonly elements: readonly XfccElement[] }
  | { readonly ok: false; readonly error: string };

export interface XfccParseOptions {
  /** Longest header accepted, in characters. */
  readonly maxLength?: number;
  /** Most elements accepted (APPEND_FORWARD grows one per hop). */
  readonly maxElements?: number;
}

const DEFAULT_MAX_LENGTH = 16 * 1024;
const DEFAULT_MAX_ELEMENTS = 8;

const COMMA = 44;
const SEMI = 59;
const EQ = 61;
const QUOTE = 34;
const BACKSLASH = 92;
const SPACE = 32;
const TAB = 9;

function err(error: string): XfccParseResult {
  return { ok: false, error };
}

interface MutableElement {
  by: string[];
  hash: string | undefined;
  cert: string | undefined;
  chain: string | undefined;
  subject: string | undefined;
  uri: string[];
  dns: string[];
}

const NONE: readonly string[] = Object.freeze([]);

function freezeElement(e: MutableElement): XfccElement {
  return {
    by: e.by.length === 0 ? NONE : e.by,
    hash: e.hash ?? '',
    cert: e.cert ?? '',
    chain: e.chain ?? '',
    subject: e.subject ?? '',
    uri: e.uri.length === 0 ? NONE : e.uri,
    dns: e.dns.length === 0 ? NONE : e.dns,
  };
}

/**
 * The header holds no control character (other than tab). Anchored and
 * greedy over the allowed set, so V8 runs one tight loop; the unanchored
 * search `/[\x00-\x08\x0a-\x1f\x7f]/` restarts at every offset and is about
 * twice as slow on a 1 KB header (this scan is most of a warm Check's parse).
 */
const NO_CONTROL = /^[\t\x20-\x7e\x80-\uffff]*$/;

/** Finds a control character (other than tab); returns its index or -1. */
function findControl(s: string): number {
  if (NO_CONTROL.test(s)) return -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < SPACE && c !== TAB) || c === 127) return i;
  }
  return -1;
}

/**
 * Parses the whole header. `raw` is what Envoy forwarded: repeated XFCC
 * headers arrive joined with `,`, which the grammar absorbs.
 */
export function parseXfcc(raw: string, options: XfccParseOptions = {}): XfccParseResult {
  if (typeof raw !== 'string') return err('header is not a string');
  const maxLength = options.maxLength ?? DEFAULT_MAX_LENGTH;
  const maxElements = options.maxElements ?? DEFAULT_MAX_ELEMENTS;
  if (raw.length > maxLength) return err(`header is ${raw.length} characters, over the ${maxLength} limit`);
  const ctl = findControl(raw);
  if (ctl !== -1) return err(`control character 0x${raw.charCodeAt(ctl).toString(16).padStart(2, '0')} at offset ${ctl}`);

  const elements: XfccElement[] = [];
  const n = raw.length;
  let i = 0;
  let current: MutableElement = { by: [], hash: undefined, cert: undefined, chain: undefined, subject: undefined, uri: [], dns: [] };
  let pairsInElement = 0;

  for (;;) {
    // Optional whitespace before a key (tolerated around separators; Envoy writes none).
    while (i < n && (raw.charCodeAt(i) === SPACE || raw.charCodeAt(i) === TAB)) i++;
    if (i >= n) return err(pairsInElement === 0 ? (elements.length === 0 ? 'header is empty' : 'trailing ","') : 'trailing ";"');
    const keyStart = i;
    while (i < n) {
      const c = raw.charCodeAt(i);
      if (c === EQ || c === SEMI || c === COMMA || c === QUOTE) break;
      i++;
    }
    if (i >= n || raw.charCodeAt(i) !== EQ) return err(`pair without "=" at offset ${keyStart}`);
    const key = raw.slice(keyStart, i).trim().toLowerCase();
    if (key === '') return err(`empty key at offset ${keyStart}`);
    i++; // '='

    let value: string;
    if (i < n && raw.charCodeAt(i) === QUOTE) {
      const open = i;
      i++;
      // Jump from quote to quote with indexOf (native, fast on a 2 KB PEM);
      // only values that hold backslashes take the slow unescaping path.
      let close = -1;
      let escaped = false;
      let j = i;
      for (;;) {
        const q = raw.indexOf('"', j);
        if (q === -1) break;
        let backslashes = 0;
        for (let k = q - 1; k >= i && raw.charCodeAt(k) === BACKSLASH; k--) backslashes++;
        if (backslashes % 2 === 0) {
          close = q;
          break;
        }
        escaped = true;
        j = q + 1;
      }
      if (close === -1) return err(`unbalanced quote opened at offset ${open}`);
      value = raw.slice(i, close);
      // Envoy writes Subject verbatim between quotes (its RFC 2253 text already escapes `"` and `\`),
      // so it is kept as written: equal to source.principal and to what subject rules match.
      if (escaped && key !== 'subject') value = unescapeQuoted(value);
      i = close + 1;
      // Optional whitespace after the closing quote, then a separator or the end.
      while (i < n && (raw.charCodeAt(i) === SPACE || raw.charCodeAt(i) === TAB)) i++;
      if (i < n) {
        const c = raw.charCodeAt(i);
        if (c !== SEMI && c !== COMMA) return err(`unexpected character after quoted value at offset ${i}`);
      }
    } else {
      const start = i;
      while (i < n) {
        const c = raw.charCodeAt(i);
        if (c === SEMI || c === COMMA) break;
        if (c === QUOTE) return err(`quote inside unquoted value at offset ${i}`);
        if (c === EQ) return err(`"=" inside unquoted value at offset ${i} (must be quoted)`);
        i++;
      }
      value = raw.slice(start, i).trim();
    }

    const problem = assign(current, key, value);
    if (problem !== undefined) return err(`${problem} in element ${elements.length + 1}`);
    pairsInElement++;

    if (i >= n) {
      elements.push(freezeElement(current));
      break;
    }
    const sep = raw.charCodeAt(i);
    i++;
    if (sep === COMMA) {
      elements.push(freezeElement(current));
      if (elements.length >= maxElements) return err(`more than ${maxElements} elements`);
      current = { by: [], hash: undefined, cert: undefined, chain: undefined, subject: undefined, uri: [], dns: [] };
      pairsInElement = 0;
    }
  }
  return { ok: true, elements };
}

/** In quoted values other than Subject only `\"` is an escape; other backslashes stay as written. */
function unescapeQuoted(v: string): string {
  return v.replace(/\\"/g, '"');
}

/** Stores one pair; returns a problem for a repeated single-valued key. */
function assign(e: MutableElement, key: string, value: string): string | undefined {
  switch (key) {
    case 'by':
      if (value !== '') e.by.push(value);
      return undefined;
    case 'uri':
      if (value !== '') e.uri.push(value);
      return undefined;
    case 'dns':
      if (value !== '') e.dns.push(value);
      return undefined;
    case 'hash':
      if (e.hash !== undefined) return 'repeated Hash';
      e.hash = value;
      return undefined;
    case 'cert':
      if (e.cert !== undefined) return 'repeated Cert';
      e.cert = value;
      return undefined;
    case 'chain':
      if (e.chain !== undefined) return 'repeated Chain';
      e.chain = value;
      return undefined;
    case 'subject':
      if (e.subject !== undefined) return 'repeated Subject';
      e.subject = value;
      return undefined;
    default:
      // Unknown keys are skipped: newer Envoys may add fields.
      return undefined;
  }
}

export type ForwardingMode = 'sanitize_set' | 'append_forward';

/**
 * Picks the element describing the client; the element count must be exactly
 * what the configured topology writes, so a boundary shifted by certificate
 * content (an unquoted URI=/DNS= holding `,`) is refused, not resolved.
 * - sanitize_set: the proxy replaced the header, so exactly one element exists.
 * - append_forward: the edge proxy (which terminated the client's TLS)
 *   sanitizes and each further trusted proxy appends one element, so
 *   `trustedHops` proxies write exactly `trustedHops` elements and the
 *   client's is the first. More means a client-written or split element.
 */
export function selectClientElement(
  elements: readonly XfccElement[],
  mode: ForwardingMode,
  trustedHops: number,
): { element: XfccElement } | { error: string } {
  if (mode === 'sanitize_set') {
    if (elements.length !== 1) return { error: `${elements.length} elements where the sanitizing proxy writes exactly one` };
    return { element: elements[0]! };
  }
  if (elements.length !== trustedHops) return { error: `${elements.length} elements but ${trustedHops} trusted hops write exactly ${trustedHops}` };
  return { element: elements[0]! };
}

/** One element's fields for {@link formatXfccElement}; a field left undefined is not written. */
export interface XfccElementFields {
  readonly by?: readonly string[];
  readonly hash?: string;
  /** URL-encoded PEM ({@link urlEncodePem}). */
  readonly cert?: string;
  /** URL-encoded PEM chain. */
  readonly chain?: string;
  /** RFC 2253 subject, written verbatim between quotes. */
  readonly subject?: string;
  /** URI SANs; an empty list writes Envoy's lone `URI=`. */
  readonly uri?: readonly string[];
  readonly dns?: readonly string[];
}

/**
 * Writes one element exactly as Envoy does (conn_manager_utility.cc): keys in
 * the order By, Hash, Cert, Chain, Subject, URI, DNS; Cert, Chain and Subject
 * quoted with nothing escaped inside (URL encoding and RFC 2253 escaping
 * already keep `"` out); URI/DNS unquoted. The one XFCC writer: the dev
 * certificate kit and the local gateway both format through it, and
 * parseXfcc reads back what it writes. Join elements with `,` for APPEND_FORWARD.
 */
export function formatXfccElement(f: XfccElementFields): string {
  const parts: string[] = [];
  if (f.by) for (const b of f.by) parts.push(`By=${b}`);
  if (f.hash !== undefined) parts.push(`Hash=${f.hash}`);
  if (f.cert !== undefined) parts.push(`Cert="${f.cert}"`);
  if (f.chain !== undefined) parts.push(`Chain="${f.chain}"`);
  if (f.subject !== undefined) parts.push(`Subject="${f.subject}"`);
  if (f.uri) {
    if (f.uri.length === 0) parts.push('URI=');
    for (const u of f.uri) parts.push(`URI=${u}`);
  }
  if (f.dns) for (const d of f.dns) parts.push(`DNS=${d}`);
  return parts.join(';');
}

const PEM_ESCAPES: Readonly<Record<string, string>> = { '\n': '%0A', ' ': '%20', '+': '%2B', '/': '%2F', '=': '%3D' };

/** URL-encodes a PEM the way Envoy does for XFCC Cert/Chain: only newline, space, `+`, `/` and `=` (uppercase hex). */
export function urlEncodePem(pem: string): string {
  return pem.replace(/[\n +/=]/g, (c) => PEM_ESCAPES[c]!);
}
