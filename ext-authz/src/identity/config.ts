/**
 * The `identity` section of the config (owned by the identity capability).
 * `identity.mtls` holds how client certificates are believed (XFCC forwarding
 * mode, trusted proxies, CA bundle, deny list) and the rules that map a
 * certificate's SANs to an identity. Reference: docs/mtls.md.
 */
import { z } from 'zod';
import { regexSchema } from '../config/common.js';

const regex = regexSchema;

/** One string matcher: exactly one of exact, prefix, suffix, regex (full match, named captures usable in templates). */
export const stringMatchSchema = z.union(
  [
    z.strictObject({ exact: z.string().min(1) }),
    z.strictObject({ prefix: z.string().min(1) }),
    z.strictObject({ suffix: z.string().min(1) }),
    z.strictObject({ regex }),
  ],
  { error: 'must be exactly one of {exact: "..."}, {prefix: "..."}, {suffix: "..."} or {regex: "..."}' },
);
export type StringMatchConfig = z.infer<typeof stringMatchSchema>;

export const SAN_FIELDS = ['uri', 'dns', 'email', 'ip', 'subject'] as const;
export type SanField = (typeof SAN_FIELDS)[number];

const templateString = z.string().min(1).max(512);

export const mappingRuleSchema = z
  .strictObject({
    /** Shown in the audit (`mtls.rule`); defaults to `rules[i]`. */
    name: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'use letters, digits, _ . : -').optional(),
    /** Which certificate field to match; exactly one. `subject` is the certificate subject DN. */
    uri: stringMatchSchema.optional(),
    dns: stringMatchSchema.optional(),
    email: stringMatchSchema.optional(),
    ip: stringMatchSchema.optional(),
    subject: stringMatchSchema.optional(),
    /** The identity produced. Templates may use `{capture}` names from a regex, and `{san}`, `{rest}` (after a prefix / before a suffix), `{serial}`, `{fingerprint}`. */
    identity: z.strictObject({
      subject: templateString.default('{san}'),
      kind: z.enum(['user', 'service', 'developer']),
      attributes: z.record(z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'attribute names use letters, digits, _ . : -'), templateString).default({}),
      groups: z.array(templateString).default([]),
    }),
  })
  .refine((r) => SAN_FIELDS.filter((f) => r[f] !== undefined).length === 1, {
    message: `set exactly one of ${SAN_FIELDS.join(', ')} to say which certificate field the rule matches`,
  });
export type MappingRuleConfig = z.infer<typeof mappingRuleSchema>;

const hex = z
  .string()
  .transform((s) => s.replace(/[:\s]/g, '').toLowerCase())
  .pipe(z.string().regex(/^[0-9a-f]+$/, 'must be hexadecimal (colons allowed)'));

export const xfccOptionsSchema = z.strictObject({
  /** How the proxy in front forwards XFCC: Istio gateways SANITIZE_SET, sidecars APPEND_FORWARD. */
  mode: z.enum(['sanitize_set', 'append_forward']).default('sanitize_set'),
  /** append_forward only: trusted proxies that appended an element, counting the one that terminated the client's TLS. */
  trustedHops: z.number().int().min(1).max(8).default(1),
  /** Longest XFCC header accepted (characters); longer is denied as malformed. */
  maxBytes: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
  /** Deny an element that has no `Hash=` (Envoy always writes it). */
  requireHash: z.boolean().default(true),
  /** Deny an element that has no `Cert=` (nothing to check validity, issuer or deny list against). */
  requireCert: z.boolean().default(true),
});
export type XfccOptions = z.infer<typeof xfccOptionsSchema>;

export const mtlsConfigSchema = z
  .strictObject({
    xfcc: xfccOptionsSchema.prefault({}),
    /**
     * Peer principals (SPIFFE ids) of proxies in front of us, e.g. the ingress
     * gateway seen from a sidecar. When the Check's `source.principal` is one of
     * them, the client is the XFCC element; otherwise the peer is the client.
     */
    trustedProxies: z.array(z.string().min(1)).default([]),
    /**
     * When the peer is the client and XFCC is also present but describes a
     * different certificate (a forged header that was not sanitized): `deny`
     * (401 xfcc_peer_mismatch) or `ignore` the header and use the peer.
     */
    onPeerMismatch: z.enum(['deny', 'ignore']).default('deny'),
    /** CA bundle (PEM) the client certificate must chain to; verification is off when neither is set. */
    ca: z
      .strictObject({
        pem: z.string().min(1).optional(),
        files: z.array(z.string().min(1)).default([]),
      })
      .refine((c) => c.pem !== undefined || c.files.length > 0, { message: 'set pem or files (or remove ca)' })
      .optional(),
    /** Revoked or banned certificates. */
    deny: z
      .strictObject({
        serials: z.array(hex).default([]),
        fingerprints: z.array(hex.pipe(z.string().length(64, 'must be a SHA-256 fingerprint (64 hex digits)'))).default([]),
      })
      .prefault({}),
    /** Tolerance for clock differences in validity checks. */
    clockSkewSeconds: z.number().int().min(0).max(3600).default(60),
    /** Parsed certificates kept in memory (LRU, keyed by the SHA-256 of the URL-encoded PEM). */
    cacheSize: z.number().int().min(16).max(1_000_000).default(10_000),
    /** Estimated heap the certificate cache may hold, in bytes (a parsed certificate is charged about 8x its PEM). */
    cacheBytes: z.number().int().min(1024 * 1024).max(4 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
    /** Longest peer certificate (`source.certificate`, URL-encoded PEM characters) accepted; longer is 401 `certificate_too_large`. */
    maxCertificateBytes: z.number().int().min(1024).max(64 * 1024).default(16 * 1024),
    /** First matching rule wins. */
    rules: z.array(mappingRuleSchema).default([]),
  })
  .superRefine((c, ctx) => {
    if (c.xfcc.mode === 'sanitize_set' && c.xfcc.trustedHops !== 1) {
      ctx.addIssue({ code: 'custom', path: ['xfcc', 'trustedHops'], message: 'sanitize_set writes a single element: trustedHops must be 1 (use mode append_forward for more hops)' });
    }
  });
export type MtlsConfig = z.infer<typeof mtlsConfigSchema>;

export const identityConfigSchema = z
  .strictObject({
    mtls: mtlsConfigSchema.optional(),
  })
  .optional();
export type IdentityConfig = z.infer<typeof identityConfigSchema>;

declare module '../config/schema.js' {
  interface ConfigSections {
    /** Identity sources (mTLS mapping rules, ...). */
    identity?: IdentityConfig;
  }
}
