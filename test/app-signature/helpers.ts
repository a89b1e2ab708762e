/** Shared parts of the app-signature tests: a registration authority, the config, signed Checks. */
import { generateKeyPairSync } from 'node:crypto';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import { AppDevice, offlineAttestation } from '../../ext-authz/src/app-signature/client.js';
import { REDIS_URL, TOKEN } from '../fds/helpers.js';

export const HOST = 'app.example.com';
export const authorityKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
export const AUTHORITY_PUBLIC_PEM = authorityKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString();

export function appConfig(prefix: string, registrationPort: number, rules: unknown[] = [], extraRoutes: unknown[] = [], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    server: { grpc: { host: '127.0.0.1' }, admin: { host: '127.0.0.1' }, shutdownGraceMs: 500, defaultDeadlineMs: 2000 },
    logging: { level: 'info', audit: true },
    fds: { store: 'redis', redis: { url: REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 1000 }, admin: { token: TOKEN }, rules },
    appSignature: {
      registration: { listen: { host: '127.0.0.1', port: registrationPort }, authorities: { backend: { publicKey: AUTHORITY_PUBLIC_PEM, level: 'basic' } } },
    },
    gateways: {
      app: {
        kind: 'app',
        routes: [{ name: 'api', match: { path: { prefix: '/v1/' } }, stages: ['fds', 'app-signature'] }, ...extraRoutes],
      },
    },
    defaultGateway: 'app',
    ...extra,
  });
}

/** A device registered for `user` through the real registration listener. */
export async function registeredDevice(registrationPort: number, user = 'alice', alg: 'ecdsa-p256-sha256' | 'ed25519' = 'ecdsa-p256-sha256'): Promise<AppDevice> {
  const d = AppDevice.generate(alg);
  await d.register(`http://127.0.0.1:${registrationPort}/app/v1/devices`, 'ios', offlineAttestation(authorityKeys.privateKey, { authority: 'backend', jkt: d.jkt, platform: 'ios', user }));
  return d;
}

export interface AppRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  ip?: string;
  /** Overrides of the signed headers (tampering). */
  tamper?: (h: Record<string, string>) => void;
  /** The body Envoy forwards, when it differs from the one signed. */
  forwarded?: Buffer | null;
}

/** Signs with the SDK and builds the CheckRequest Envoy would send (body as raw_body, as with pack_as_bytes). */
export function signedCheck(device: AppDevice, r: AppRequest = {}): CheckRequest {
  const method = r.method ?? 'GET';
  const path = r.path ?? '/v1/items?x=1';
  const base: Record<string, string> = { ...r.headers };
  if (r.body !== undefined) {
    base['content-type'] = 'application/json';
    base['content-length'] = String(Buffer.byteLength(r.body));
  }
  const signed = { ...base, ...device.sign({ method, url: `https://${HOST}${path}`, headers: base, ...(r.body !== undefined ? { body: r.body } : {}) }) };
  r.tamper?.(signed);
  const body = r.forwarded === null ? undefined : r.forwarded ?? (r.body !== undefined ? Buffer.from(r.body) : undefined);
  return buildCheckRequest({ method, host: HOST, path, headers: signed, gateway: 'app', sourceAddress: r.ip ?? '198.51.100.20', ...(body ? { body } : {}) });
}

export function statusOf(res: CheckResponse): number {
  return (res.status?.code ?? 0) === 0 ? 200 : Number(res.denied_response?.status?.code ?? 403);
}

export function reasonOf(res: CheckResponse): string {
  try {
    return String(JSON.parse(String(res.denied_response?.body ?? '{}'))['reason'] ?? '');
  } catch {
    return '';
  }
}

/** A passport section whose static source knows the users the tests register devices for. */
export const PASSPORT = {
  issuer: 'https://passgate.test',
  audience: ['orders'],
  keys: { active: 'k1', entries: [{ id: 'k1', generate: true }] },
  source: { type: 'static', users: { alice: { id: 'u-alice', roles: ['customer'], scopes: [] }, zoe: { id: 'u-zoe', roles: [], scopes: [] } } },
};
