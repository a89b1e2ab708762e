/**
 * One signed app request checked against one device key: the policy on top
 * of RFC 9421 (message-signature.ts). Shared by the hot-path stage (key from
 * the device credential) and the rotation endpoint (key from the registry).
 *
 * Policy: the `label` member only; covered components must include
 * @method, @target-uri (or @path and @authority), the credential header when
 * one is used, and content-digest whenever the request has a body (checked
 * against the body here); `created`, `nonce` and `keyid` (= the key's
 * thumbprint) are required; `expires`, when present, bounds the window, and
 * nothing lives longer than maxAge; `alg`, when present, must be the key's
 * algorithm and an allowed one (no algorithm confusion).
 */
import type { KeyObject } from 'node:crypto';
import { checkContentDigest } from './content-digest.js';
import { parseSignature, signatureBase, verifyBase, type Failure, type ParsedSignature, type SignatureAlgorithm, type SignedRequest } from './message-signature.js';

export interface VerifyPolicy {
  readonly label: string;
  readonly algorithms: ReadonlySet<SignatureAlgorithm>;
  readonly maxAgeSec: number;
  readonly skewSec: number;
  readonly maxHeaderBytes: number;
  /** Covered-component requirement for the credential header; undefined when none (rotation). */
  readonly credentialHeader: string | undefined;
}

export interface SignedAppRequest extends SignedRequest {
  /** The forwarded body (undefined when Envoy sent none). */
  readonly body: Uint8Array | string | undefined;
  /** Whether the request has a body by its headers (content-length > 0, chunked). */
  readonly declaresBody: boolean;
  /** content-length when given, else -1. */
  readonly contentLength: number;
  /** Envoy's x-envoy-auth-partial-body: true (the body was cut at max_request_bytes). */
  readonly partialBody: boolean;
}

export interface DeviceKey {
  readonly key: KeyObject;
  readonly alg: SignatureAlgorithm;
  readonly jkt: string;
}

export type VerifyResult = { readonly ok: true; readonly sig: ParsedSignature; readonly nonce: string; readonly expiresAtSec: number } | Failure;

const fail = (reason: string, detail: string): Failure => ({ ok: false, reason, detail });
const NONCE = /^[\x21-\x7e]{8,128}$/;

/** Facts of a request that decide whether its body must be covered: shared by the stage and the registration listener. */
export function bodyFacts(headers: Readonly<Record<string, string>>): { declaresBody: boolean; contentLength: number; partialBody: boolean } {
  const cl = headers['content-length'];
  const contentLength = cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : -1;
  return { declaresBody: contentLength > 0 || (contentLength === -1 && headers['transfer-encoding'] !== undefined), contentLength, partialBody: headers['x-envoy-auth-partial-body'] === 'true' };
}

export function verifyAppRequest(req: SignedAppRequest, key: DeviceKey, p: VerifyPolicy, nowMs = Date.now()): VerifyResult {
  const parsed = parseSignature(req.headers['signature-input'], req.headers['signature'], p.label, p.maxHeaderBytes);
  if (!parsed.ok) return parsed;
  const sig = parsed.sig;
  const { created, expires, nonce, keyid, alg } = sig.params;
  if (!p.algorithms.has(key.alg)) return fail('signature_alg_not_allowed', `the device key is ${key.alg}, which this route does not accept`);
  if (alg !== undefined && alg !== key.alg) return fail('signature_alg_mismatch', `alg "${alg}" is not the device key's algorithm (${key.alg})`);
  if (keyid === undefined) return fail('signature_params_missing', 'keyid is required (the device key thumbprint)');
  if (keyid !== key.jkt) return fail('signature_keyid_mismatch', 'keyid is not the thumbprint of the device key in the credential');
  if (created === undefined) return fail('signature_params_missing', 'created is required');
  if (nonce === undefined) return fail('signature_params_missing', 'nonce is required (single use)');
  if (!NONCE.test(nonce)) return fail('signature_params_invalid', 'nonce must be 8 to 128 visible ASCII characters');
  const now = nowMs / 1000;
  if (created > now + p.skewSec) return fail('signature_created_future', `created ${created} is ahead of the server clock (${Math.floor(now)}) by more than ${p.skewSec}s`);
  if (created < now - p.maxAgeSec - p.skewSec) return fail('signature_expired', `created ${created} is older than ${p.maxAgeSec}s (+${p.skewSec}s skew)`);
  if (expires !== undefined) {
    if (expires <= created) return fail('signature_params_invalid', 'expires must be after created');
    if (expires - created > p.maxAgeSec) return fail('signature_params_invalid', `expires - created spans more than ${p.maxAgeSec}s`);
    if (expires + p.skewSec < now) return fail('signature_expired', `expired at ${expires} (now ${Math.floor(now)})`);
  }
  const c = sig.components;
  if (!c.includes('@method')) return fail('component_missing', 'the signature must cover @method');
  if (!c.includes('@target-uri') && !(c.includes('@path') && c.includes('@authority'))) return fail('component_missing', 'the signature must cover @target-uri, or @path and @authority');
  if (p.credentialHeader !== undefined && !c.includes(p.credentialHeader)) return fail('component_missing', `the signature must cover the ${p.credentialHeader} header`);
  const hasBody = req.declaresBody || (req.body !== undefined && req.body.length > 0);
  if (hasBody) {
    if (!c.includes('content-digest')) return fail('component_missing', 'a request with a body must cover content-digest');
    if (req.partialBody) return fail('body_truncated', 'Envoy forwarded only part of the body (x-envoy-auth-partial-body): a partial body is never verified; raise max_request_bytes or send less');
    if (req.body === undefined) return fail('body_unavailable', 'the request has a body but Envoy did not forward it: enable with_request_body (Istio includeRequestBodyInCheck) on this route');
    const bytes = typeof req.body === 'string' ? Buffer.from(req.body, 'utf8') : req.body;
    if (req.contentLength >= 0 && bytes.length !== req.contentLength) return fail('body_truncated', `content-length is ${req.contentLength} but ${bytes.length} bytes were forwarded`);
    const d = checkContentDigest(req.headers['content-digest'], bytes);
    if (d) return d;
  }
  const base = signatureBase(sig, req);
  if (typeof base !== 'string') return base;
  if (!verifyBase(key.alg, key.key, base, sig.signature)) return fail('signature_invalid', 'the signature does not verify with the device key');
  return { ok: true, sig, nonce, expiresAtSec: expires ?? created + p.maxAgeSec };
}
