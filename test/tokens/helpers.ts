/** Shared parts of the token tests: proofs made as a browser would (the `dpop` package) and hand-made bad ones. */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { generateKeyPair, generateProof } from 'dpop';
import { httpCheck } from '../support/service.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';

export const API_HOST = 'api.example.com';

export async function browserKey(): Promise<CryptoKeyPair> {
  return generateKeyPair('ES256');
}

export function proof(key: CryptoKeyPair, method: string, url: string, accessToken?: string, nonce?: string): Promise<string> {
  return generateProof(key, url, method, nonce, accessToken);
}

export function apiCheck(opts: { method?: string; path?: string; token?: string; scheme?: string; dpop?: string; headers?: Record<string, string>; host?: string; ip?: string; gateway?: string }): CheckRequest {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers['authorization'] = `${opts.scheme ?? 'DPoP'} ${opts.token}`;
  if (opts.dpop !== undefined) headers['dpop'] = opts.dpop;
  return httpCheck({ method: opts.method ?? 'GET', host: opts.host ?? API_HOST, path: opts.path ?? '/v1/items', headers, ...(opts.ip ? { sourceAddress: opts.ip } : {}), ...(opts.gateway ? { gateway: opts.gateway } : {}) });
}

export function statusOf(r: CheckResponse): number {
  return r.denied_response?.status?.code ?? 200;
}

export function reasonOf(r: CheckResponse): string {
  if (!r.denied_response) return 'allowed';
  return (JSON.parse(String(r.denied_response.body)) as { reason: string }).reason;
}

export function deniedHeader(r: CheckResponse, name: string): string | undefined {
  return r.denied_response?.headers?.find((h) => h.header?.key === name)?.header?.value ?? undefined;
}

export interface RawKey {
  readonly privateKey: KeyObject;
  readonly jwk: Record<string, unknown>;
}

export function ecKey(): RawKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, jwk: publicKey.export({ format: 'jwk' }) as Record<string, unknown> };
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** Signs any header/payload with ES256 (for proofs a browser library would refuse to make). */
export function signEs256(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return `${input}.${sig}`;
}

export function jti(): string {
  return randomBytes(12).toString('base64url');
}

export function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

export { createPrivateKey };

export { scriptCalls } from '../../bench/common/redis-cluster.js';
