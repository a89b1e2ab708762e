/**
 * Apple App Attest *assertion* checks (the per-request half of App Attest),
 * shipped as a building block and not wired into the stage yet: the stage's
 * freshness is the nonce claim, and a counter would need the registry's
 * last counter on the hot path (docs/app-gateway.md, "Attestation verifiers").
 *
 * An assertion is a CBOR map {signature, authenticatorData}. Checks, per
 * Apple's "Validating apps that connect to your server":
 *   nonce = SHA-256(authenticatorData || SHA-256(clientData)),
 *   the signature (ECDSA P-256, DER) verifies over nonce with the device key,
 *   authenticatorData[0..32] (rpIdHash) = SHA-256(<team id>.<bundle id>),
 *   authenticatorData[33..37] (counter, big-endian) > the last counter stored.
 */
import { createHash, timingSafeEqual, verify as cryptoVerify, type KeyObject } from 'node:crypto';

export type AssertionResult = { readonly ok: true; readonly counter: number } | { readonly ok: false; readonly reason: string; readonly detail: string };

const bad = (reason: string, detail: string): AssertionResult => ({ ok: false, reason, detail });

/** Just enough CBOR (RFC 8949) for an assertion: a definite map of text keys to byte strings. */
export function decodeAssertion(bytes: Uint8Array): { signature: Buffer; authenticatorData: Buffer } | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let i = 0;
  const head = (): { major: number; len: number } | undefined => {
    if (i >= b.length) return undefined;
    const first = b[i++]!;
    const major = first >> 5;
    const info = first & 31;
    if (info < 24) return { major, len: info };
    const n = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : 0;
    if (n === 0 || i + n > b.length) return undefined;
    const len = n === 1 ? b[i]! : n === 2 ? b.readUInt16BE(i) : b.readUInt32BE(i);
    i += n;
    return { major, len };
  };
  const map = head();
  if (map?.major !== 5 || map.len > 8) return undefined;
  const out: Record<string, Buffer> = {};
  for (let k = 0; k < map.len; k++) {
    const key = head();
    if (key?.major !== 3 || i + key.len > b.length) return undefined;
    const name = b.toString('utf8', i, i + key.len);
    i += key.len;
    const value = head();
    if (value?.major !== 2 || i + value.len > b.length) return undefined;
    out[name] = b.subarray(i, i + value.len);
    i += value.len;
  }
  if (i !== b.length || !out['signature'] || !out['authenticatorData']) return undefined;
  return { signature: out['signature'], authenticatorData: out['authenticatorData'] };
}

export function verifyAppAttestAssertion(o: {
  readonly assertion: Uint8Array;
  /** What the app hashed into the assertion (e.g. the request's signature base, with a server challenge). */
  readonly clientData: Uint8Array;
  /** The attested key (P-256) stored at registration. */
  readonly key: KeyObject;
  /** `<team id>.<bundle id>`. */
  readonly appId: string;
  readonly lastCounter: number;
}): AssertionResult {
  const a = decodeAssertion(o.assertion);
  if (a === undefined) return bad('assertion_malformed', 'the assertion is not a CBOR map with signature and authenticatorData byte strings');
  if (a.authenticatorData.length < 37) return bad('assertion_malformed', 'authenticatorData is shorter than 37 bytes');
  const clientDataHash = createHash('sha256').update(o.clientData).digest();
  const nonce = createHash('sha256').update(a.authenticatorData).update(clientDataHash).digest();
  let ok = false;
  try {
    ok = cryptoVerify('sha256', nonce, { key: o.key, dsaEncoding: 'der' }, a.signature);
  } catch {
    ok = false;
  }
  if (!ok) return bad('assertion_bad_signature', 'the assertion signature does not verify with the attested key');
  const rpIdHash = createHash('sha256').update(o.appId).digest();
  if (!timingSafeEqual(a.authenticatorData.subarray(0, 32), rpIdHash)) return bad('assertion_wrong_app', `rpIdHash is not SHA-256 of ${o.appId}`);
  const counter = a.authenticatorData.readUInt32BE(33);
  if (counter <= o.lastCounter) return bad('assertion_counter_backwards', `counter ${counter} is not above the last one seen (${o.lastCounter}): a replayed or cloned key`);
  return { ok: true, counter };
}
