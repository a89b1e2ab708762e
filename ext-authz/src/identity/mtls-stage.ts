/**
 * The `mtls` stage: establishes the caller's identity from its client
 * certificate, taken from the Check's peer (`source.certificate` /
 * `source.principal`) or from x-forwarded-client-cert (XFCC), following the
 * trust rules in docs/contracts/xfcc.md#trust-and-hops:
 *
 * - XFCC is read only on gateways with `trustXfcc: true` (elsewhere a client could
 *   have written it; the core also strips it there).
 * - When the peer is one of `identity.mtls.trustedProxies` (a sidecar behind
 *   the gateway), the client is the XFCC element that proxy chain added.
 * - Otherwise the peer is the client and wins: an XFCC that describes another
 *   certificate is a forgery (401 `xfcc_peer_mismatch`, or ignored).
 *
 * The warm path (a certificate seen before) is synchronous: one XFCC scan,
 * one LRU lookup, a hash compare, a validity compare and a memoized mapping.
 * The first sight of a certificate with CA verification on adds OpenSSL
 * signature checks (synchronous, tens of µs), memoized with the entry.
 */
import { byteLru } from '../resilience/byte-lru.js';
import { z } from 'zod';
import { CONTINUE, deny, type StageResult } from '../pipeline/decision.js';
import { CERT_FINGERPRINT, CERT_SERIAL } from '../pipeline/facts.js';
import { CERTIFICATE } from './facts.js';
import type { CheckContext } from '../pipeline/context.js';
import type { StageDefinition } from '../stages/stage.js';
import type { IdentityState } from './state.js';
import { parseXfcc, type ForwardingMode, type XfccElement, type XfccParseOptions } from './xfcc.js';
import { isRejection, verifyXfcc, type VerifiedClient, type XfccRejection } from './xfcc-verify.js';
import { type CertificateCache, retainedEntryBytes, verifyChain, type CacheEntry, type CertificateFacts, type ParsedCertificate, type VerifyOutcome } from './certificate.js';
import { mapIdentity, sanSourceOf, type MappingResult, type SanSource } from './mapping.js';
import { compileMtls, type CompiledMtls } from './profile.js';
import { ConfigError } from '../config/errors.js';

const XFCC = 'x-forwarded-client-cert';

const schema = z.strictObject({
  type: z.literal('mtls'),
  /** When true, a request without any client certificate continues without identity instead of a 401. */
  optional: z.boolean().default(false),
  /** Overrides `identity.mtls.xfcc` for this route (e.g. a sidecar profile behind the gateway). */
  xfcc: z
    .strictObject({
      mode: z.enum(['sanitize_set', 'append_forward']).optional(),
      trustedHops: z.number().int().min(1).max(8).optional(),
    })
    .optional(),
});
type Options = z.infer<typeof schema>;

/** The audit record of a successful mapping; memoized per certificate and rule set. */
interface MappedMemo {
  readonly result: MappingResult | undefined;
  readonly audit: Readonly<Record<string, unknown>>;
}

const EMPTY: readonly string[] = Object.freeze([]);

/** Every value the proxy listed is one of the certificate's (older Envoys list only the first URI SAN). */
function allIn(listed: readonly string[], actual: readonly string[]): boolean {
  for (const v of listed) if (!actual.includes(v)) return false;
  return true;
}

/**
 * Envoy's principal for the client an XFCC element describes. With the
 * certificate decoded, its own principal (Envoy computed the peer principal
 * from that certificate, so the element's URI= order cannot change it);
 * else the element's strings by the same rule: first URI, else first DNS, else Subject.
 */
function elementPrincipal(e: XfccElement, facts: CertificateFacts | undefined): string {
  return facts?.principal ?? e.uri[0] ?? e.dns[0] ?? e.subject;
}

/** The SANs a bare principal string stands for (Envoy: URI SAN, else DNS SAN, else subject). */
function principalSource(principal: string): SanSource {
  if (principal.includes('://')) return { uri: [principal], dns: EMPTY, email: EMPTY, ip: EMPTY, subject: '' };
  if (/^[A-Za-z0-9*][A-Za-z0-9.*-]*$/.test(principal)) return { uri: EMPTY, dns: [principal], email: EMPTY, ip: EMPTY, subject: '' };
  return { uri: EMPTY, dns: EMPTY, email: EMPTY, ip: EMPTY, subject: principal };
}

function certAudit(facts: CertificateFacts): Record<string, unknown> {
  return {
    serial: facts.serial,
    fingerprint: facts.fingerprint,
    subject: facts.subject,
    issuer: facts.issuer,
    sans: facts.sans,
    not_after: new Date(facts.notAfter).toISOString(),
  };
}

/** Bounds of each mtls stage's cache of verified XFCC headers (the hot clients of one route). */
const VERIFIED_XFCC_ENTRIES = 4096;
const VERIFIED_XFCC_BYTES = 16 * 1024 * 1024;

class MtlsStage {
  readonly type = 'mtls';
  private readonly mode: ForwardingMode;
  private readonly trustedHops: number;
  private readonly parseOptions: XfccParseOptions;
  private readonly required: StageResult;

  constructor(
    private readonly profile: CompiledMtls,
    private readonly cache: CertificateCache,
    private readonly options: Options,
  ) {
    this.mode = options.xfcc?.mode ?? profile.xfcc.mode;
    this.trustedHops = options.xfcc?.trustedHops ?? profile.xfcc.trustedHops;
    this.parseOptions = { maxLength: profile.xfcc.maxBytes, maxElements: Math.max(8, this.trustedHops + 4) };
    this.required = options.optional ? CONTINUE : deny(401, 'client_certificate_required', 'no client certificate: no peer certificate or principal, and no XFCC');
  }

  /** Who the client is, by the trust table of docs/mtls.md (one branch per row). */
  run(ctx: CheckContext): StageResult {
    const req = ctx.request;
    const principal = req.source.principal;
    const raw = ctx.gateway.trustXfcc ? req.headers[XFCC] : undefined;
    const xfcc = raw === '' ? undefined : raw;
    if (principal !== '' && this.profile.trustedProxies.has(principal)) return this.fromTrustedProxy(ctx, principal, xfcc);
    if (req.source.certificate !== '') return this.fromPeerCertificate(ctx, req.source.certificate, principal, xfcc);
    if (principal !== '') return this.fromPeerPrincipal(ctx, principal, xfcc);
    if (xfcc !== undefined) {
      ctx.audit['mtls_via'] = 'xfcc';
      return this.fromXfcc(ctx, xfcc);
    }
    if (!ctx.gateway.trustXfcc && req.headers[XFCC] !== undefined) ctx.audit['mtls_xfcc'] = 'ignored_not_mtls_gateway';
    return this.required;
  }

  /** A trusted proxy is talking to us: the client is in the XFCC it added. */
  private fromTrustedProxy(ctx: CheckContext, principal: string, xfcc: string | undefined): StageResult {
    if (xfcc !== undefined) {
      ctx.audit['mtls_via'] = 'xfcc';
      return this.fromXfcc(ctx, xfcc);
    }
    if (this.options.optional) return CONTINUE;
    // The proxy (not the client) left the certificate out: a setup problem, not an authentication failure to count.
    ctx.audit['mtls'] = { peer_principal: principal, error: 'client_certificate_required' };
    return deny(401, 'client_certificate_required', `peer ${principal} is a trusted proxy but sent no XFCC${ctx.gateway.trustXfcc ? '' : ` (gateway ${ctx.gateway.name} does not trustXfcc: XFCC ignored)`}`);
  }

  /** The peer certificate is the client; an XFCC beside it must describe the same certificate. */
  private fromPeerCertificate(ctx: CheckContext, peerCert: string, principal: string, xfcc: string | undefined): StageResult {
    // Bounded like XFCC before any hashing or decoding.
    if (peerCert.length > this.profile.maxCertificateBytes) {
      return this.fail(ctx, 401, 'certificate_too_large', `peer certificate is ${peerCert.length} characters, over identity.mtls.maxCertificateBytes (${this.profile.maxCertificateBytes})`);
    }
    const entry = this.cache.get(peerCert);
    if (!entry.result.ok) return this.fail(ctx, 401, 'bad_certificate', `peer certificate: ${entry.result.error}`);
    if (xfcc !== undefined) {
      const peer = entry.result.value.facts;
      const picked = this.clientElement(xfcc);
      let agrees = false;
      if (!isRejection(picked)) {
        const e = picked.element;
        if (e.hash !== '') agrees = e.hash.toLowerCase() === peer.fingerprint;
        else if (e.cert !== '') {
          const r = this.cache.get(e.cert).result;
          agrees = r.ok && r.value.facts.fingerprint === peer.fingerprint;
        }
      }
      if (!agrees) {
        if (this.profile.onPeerMismatch === 'deny') {
          const why = isRejection(picked) ? ` (${picked.reason}: ${picked.detail})` : '';
          return this.fail(ctx, 401, 'xfcc_peer_mismatch', `XFCC does not describe the peer certificate${why}`, peer, principal === '' ? undefined : { peer_principal: principal });
        }
        ctx.audit['mtls_xfcc'] = 'ignored_peer_mismatch';
      }
    }
    ctx.audit['mtls_via'] = 'peer_certificate';
    return this.fromEntry(ctx, entry, entry.result.value, '');
  }

  /**
   * Only the peer principal: an XFCC beside it (Istio ingress, SANITIZE_SET) is
   * the same client when it names that principal, and gives the full facts.
   */
  private fromPeerPrincipal(ctx: CheckContext, principal: string, xfcc: string | undefined): StageResult {
    if (xfcc !== undefined) {
      const picked = this.clientElement(xfcc);
      if (!isRejection(picked)) {
        const e = picked.element;
        const entry = picked.entry;
        if (elementPrincipal(e, entry?.result.ok ? entry.result.value.facts : undefined) === principal) {
          ctx.audit['mtls_via'] = 'xfcc_matching_peer';
          return this.fromElement(ctx, e, entry);
        }
      }
      if (this.profile.onPeerMismatch === 'deny') {
        const why = isRejection(picked) ? `${picked.reason}: ${picked.detail}` : `XFCC names ${elementPrincipal(picked.element, undefined) || '(nothing)'}`;
        return this.fail(ctx, 401, 'xfcc_peer_mismatch', `peer principal ${principal} disagrees with XFCC: ${why}`, undefined, { peer_principal: principal });
      }
      ctx.audit['mtls_xfcc'] = 'ignored_peer_mismatch';
    }
    ctx.audit['mtls_via'] = 'peer_principal';
    return this.mapAndSet(ctx, principalSource(principal), { principal });
  }

  /** Parses the header and validates every element (identity/xfcc-verify.ts) before the client's is believed. */
  private clientElement(header: string): VerifiedClient | XfccRejection {
    const known = this.verified.get(header);
    if (known !== undefined) {
      this.cache.countHits(known.certs); // each certificate of the header was served from a cache, as a lookup counts
      return known.picked;
    }
    const parsed = parseXfcc(header, this.parseOptions);
    if (!parsed.ok) return { reason: 'malformed_xfcc', detail: parsed.error };
    const picked = verifyXfcc(parsed.elements, this.mode, this.trustedHops, this.lookup);
    if (!isRejection(picked)) {
      let certs = 0;
      for (const e of parsed.elements) if (e.cert !== '') certs++;
      this.verified.set(header, { picked, certs });
    }
    return picked;
  }

  /**
   * Verified XFCC headers of this stage, by their exact text: a client's header is the same on every request
   * through the same proxies, and parsing and checking it is a pure function of that text and this stage's
   * settings. Time-dependent checks (validity, chain, deny list) run on every Check after it. Rejections are
   * not kept (hostile variety would only churn the cache).
   */
  private readonly verified = byteLru<string, { readonly picked: VerifiedClient; readonly certs: number }>({
    max: VERIFIED_XFCC_ENTRIES,
    maxBytes: VERIFIED_XFCC_BYTES,
    // An entry keeps its certificate's decoded entry alive past the certificate cache's own eviction: count it here too.
    sizeOf: (v) => 256 + (v.picked.entry === undefined ? 0 : retainedEntryBytes(v.picked.entry, v.picked.element.cert.length)),
  });

  private readonly lookup = (cert: string, hash: string): CacheEntry => this.cache.get(cert, hash);

  private fromXfcc(ctx: CheckContext, header: string): StageResult {
    const picked = this.clientElement(header);
    if (isRejection(picked)) return this.fail(ctx, 401, picked.reason, picked.detail, picked.facts);
    return this.fromElement(ctx, picked.element, picked.entry);
  }

  /** Checks the chosen XFCC element against its own certificate (`entry` when already looked up), then the certificate itself. */
  private fromElement(ctx: CheckContext, e: XfccElement, entry: CacheEntry | undefined): StageResult {
    if (e.cert === '') {
      if (this.profile.xfcc.requireCert) return this.fail(ctx, 401, 'xfcc_missing_cert', 'the XFCC element has no Cert= (configure the gateway to forward the certificate)');
      // Only SAN strings to go on: nothing to check validity, issuer or deny list against.
      return this.mapAndSet(ctx, { uri: e.uri, dns: e.dns, email: EMPTY, ip: EMPTY, subject: e.subject }, { xfcc_hash: e.hash });
    }
    entry ??= this.cache.get(e.cert, e.hash);
    if (!entry.result.ok) return this.fail(ctx, 401, 'bad_certificate', `XFCC Cert: ${entry.result.error}`);
    const facts = entry.result.value.facts;
    if (e.hash === '') {
      if (this.profile.xfcc.requireHash) return this.fail(ctx, 401, 'xfcc_missing_hash', 'the XFCC element has no Hash=', facts);
    } else if (e.hash.length !== 64 || e.hash.toLowerCase() !== facts.fingerprint) {
      return this.fail(ctx, 401, 'xfcc_hash_mismatch', `Hash=${e.hash.slice(0, 64)} is not the SHA-256 of the certificate`, facts);
    }
    // URI=/DNS= are what the proxy read from this same certificate; a value it does not hold means tampering.
    if (!allIn(e.uri, facts.sans.uri) || !allIn(e.dns, facts.sans.dns)) {
      return this.fail(ctx, 401, 'xfcc_san_mismatch', 'URI=/DNS= in XFCC differ from the certificate SANs', facts);
    }
    return this.fromEntry(ctx, entry, entry.result.value, e.chain);
  }

  /** Checks a decoded certificate (deny list, validity, issuer) and maps it. */
  private fromEntry(ctx: CheckContext, entry: CacheEntry, parsed: ParsedCertificate, chain: string): StageResult {
    const facts = parsed.facts;
    const p = this.profile;
    // Without a CA bundle the proxy in front verified the chain, so the certificate is authentic: failures count for its user too.
    const authentic = p.anchors === undefined;
    if (p.denyFingerprints.has(facts.fingerprint) || p.denySerials.has(facts.serial)) {
      return this.fail(ctx, 401, 'certificate_revoked', `certificate serial ${facts.serial} is on identity.mtls.deny`, facts, undefined, authentic);
    }
    const validity = this.checkValidity(ctx, facts, facts.notBefore, facts.notAfter, authentic);
    if (validity !== undefined) return validity;
    if (p.anchors === undefined) return this.mapEntry(ctx, entry, facts);
    const v = entry.verified;
    let outcome: VerifyOutcome;
    if (v !== undefined && v.anchors === p.anchors && v.chain === chain) {
      outcome = v.outcome;
    } else {
      const chainCerts = this.cache.chain(chain);
      if (!chainCerts.ok) return this.fail(ctx, 401, 'bad_certificate', `XFCC Chain: ${chainCerts.error}`, facts);
      outcome = verifyChain(parsed, chainCerts.certs, p.anchors);
      entry.verified = { anchors: p.anchors, chain, outcome };
    }
    return this.afterVerify(ctx, entry, facts, outcome);
  }

  private afterVerify(ctx: CheckContext, entry: CacheEntry, facts: CertificateFacts, o: VerifyOutcome): StageResult {
    if (!o.ok) return this.fail(ctx, 401, 'untrusted_issuer', o.error, facts);
    // An intermediate can expire before the leaf does.
    const validity = this.checkValidity(ctx, facts, o.notBefore, o.notAfter, true);
    if (validity !== undefined) return validity;
    return this.mapEntry(ctx, entry, facts);
  }

  private checkValidity(ctx: CheckContext, facts: CertificateFacts, notBefore: number, notAfter: number, authentic: boolean): StageResult | undefined {
    const now = Date.now();
    const skew = this.profile.skewMs;
    if (now + skew < notBefore) return this.fail(ctx, 401, 'certificate_not_yet_valid', `valid from ${new Date(notBefore).toISOString()}`, facts, undefined, authentic);
    if (now - skew > notAfter) return this.fail(ctx, 401, 'certificate_expired', `expired ${new Date(notAfter).toISOString()}`, facts, undefined, authentic);
    return undefined;
  }

  /** Maps a verified certificate, memoizing the result (and its audit record) per rule set. */
  private mapEntry(ctx: CheckContext, entry: CacheEntry, facts: CertificateFacts): StageResult {
    const rules = this.profile.rules;
    let memo = entry.mapped?.rules === rules ? (entry.mapped.value as MappedMemo) : undefined;
    if (memo === undefined) {
      const result = mapIdentity(rules, sanSourceOf(facts), facts);
      const audit = Object.freeze({
        ...certAudit(facts),
        rule: result?.rule,
        identity: result ? { subject: result.identity.subject, kind: result.identity.kind, groups: result.identity.groups } : undefined,
      });
      memo = { result, audit };
      entry.mapped = { rules, value: memo };
    }
    ctx.set(CERTIFICATE, facts);
    // Pipeline facts other stages read without knowing this capability (FDS `cert` blocks).
    ctx.set(CERT_FINGERPRINT, facts.fingerprint);
    ctx.set(CERT_SERIAL, facts.serial);
    ctx.audit['mtls'] = memo.audit;
    if (memo.result === undefined) {
      return this.reportFailure(ctx, facts.fingerprint, deny(403, 'unknown_client_certificate', 'no identity.mtls rule matches the certificate SANs'));
    }
    ctx.identity = memo.result.identity;
    return CONTINUE;
  }

  /** Maps SAN strings when no certificate is available (peer principal, or XFCC without Cert=). */
  private mapAndSet(ctx: CheckContext, src: SanSource, extra: Record<string, unknown>): StageResult {
    const result = mapIdentity(this.profile.rules, src, undefined);
    ctx.audit['mtls'] = {
      ...extra,
      sans: { uri: src.uri, dns: src.dns },
      subject: src.subject || undefined,
      rule: result?.rule,
      identity: result ? { subject: result.identity.subject, kind: result.identity.kind, groups: result.identity.groups } : undefined,
    };
    if (result === undefined) {
      return this.reportFailure(ctx, undefined, deny(403, 'unknown_client_certificate', 'no identity.mtls rule matches the client principal'));
    }
    ctx.identity = result.identity;
    return CONTINUE;
  }

  private fail(
    ctx: CheckContext,
    status: 401 | 403,
    reason: string,
    detail: string,
    facts?: CertificateFacts,
    extra?: Record<string, unknown>,
    authentic = false,
  ): StageResult {
    // The user an authentic certificate stands for, so user rules (user-auth-failures) can fire.
    const user = authentic && facts !== undefined ? mapIdentity(this.profile.rules, sanSourceOf(facts), facts)?.identity.subject : undefined;
    ctx.audit['mtls'] = { ...(facts ? certAudit(facts) : {}), ...extra, error: reason, error_detail: detail, ...(user ? { failed_user: user } : {}) };
    return this.reportFailure(ctx, facts?.fingerprint, deny(status, reason, detail), user);
  }

  private reportFailure(ctx: CheckContext, fingerprint: string | undefined, result: StageResult, user?: string): StageResult {
    if (user !== undefined && user !== '') ctx.report('auth_failure', 'user', user);
    if (fingerprint !== undefined) ctx.report('auth_failure', 'cert', fingerprint);
    const ip = ctx.request.source.address;
    if (ip !== '') ctx.report('auth_failure', 'ip', ip);
    return result;
  }
}

export const mtlsStage: StageDefinition<Options, IdentityState> = {
  type: 'mtls',
  schema,
  description: 'Identify the caller by its mTLS client certificate (peer or x-forwarded-client-cert), mapped by identity.mtls.rules.',
  // user: the identity the rules give an authentic certificate that then failed (expired, revoked).
  events: [{ event: 'auth_failure', kinds: ['cert', 'ip', 'user'] }],
  create(options, ctx) {
    const profile = ctx.state.mtls;
    if (profile === undefined) throw new Error(`${ctx.path}: the mtls stage needs an identity.mtls section (rules, trust settings)`);
    // The cache is the identity capability's (one per service, resized when the config is committed).
    return new MtlsStage(profile, ctx.state.certificates, options);
  },
  validate(options, config) {
    const problems: string[] = [];
    const cfg = config.identity?.mtls;
    if (cfg === undefined) problems.push('the mtls stage needs an identity.mtls section (rules, trust settings); see docs/mtls.md');
    else {
      try {
        compileMtls(cfg);
      } catch (e) {
        if (e instanceof ConfigError) problems.push(...e.problems);
        else throw e;
      }
    }
    const mode = options.xfcc?.mode ?? config.identity?.mtls?.xfcc.mode;
    const hops = options.xfcc?.trustedHops ?? config.identity?.mtls?.xfcc.trustedHops ?? 1;
    if (mode === 'sanitize_set' && hops !== 1) problems.push('xfcc.trustedHops: sanitize_set writes a single element, so trustedHops must be 1');
    return problems;
  },
};
