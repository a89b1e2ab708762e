/**
 * The registration listener (off the hot path): apps enroll a device key
 * here and renew its credential. Its own port, not the admin one: the admin
 * port serves the FDS admin API and metrics and must stay internal, while
 * this one is reached by apps through the gateway. Not ext_authz either: a
 * Check can only allow or deny, and registration must answer with a new
 * credential and write the registry, which a Check's one-round-trip budget
 * has no room for. No admin credential: an attestation is the credential.
 *
 *   POST /app/v1/devices                      {platform, publicKey (JWK), attestation} -> 201 {deviceId, credential, expiresAt}
 *   POST /app/v1/devices/<id>/credential      signed (RFC 9421) with the device key -> 200 {deviceId, credential, expiresAt}
 *
 * Rotation is a re-issue: the key comes from the registry (so an expired
 * credential can be renewed), the device must be active and not blocked in
 * FDS, and the signature's nonce is burned in the same FDS call as the block
 * check.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { readBoundedBody } from '../capabilities/admin-http.js';
import { digestText } from '../pipeline/text.js';
import type { FdsEngine } from '../fds/engine.js';
import { importDeviceKey, type CredentialAuthority } from './credential.js';
import type { AttestationVerifier } from './attestation.js';
import { bodyFacts, verifyAppRequest, type VerifyPolicy } from './verify.js';

export interface RegistrationState {
  readonly authority: CredentialAuthority;
  readonly engine: FdsEngine;
  readonly verifiers: ReadonlyMap<string, AttestationVerifier>;
  readonly maxBodyBytes: number;
  readonly logger: Logger;
  /** How long the registry keeps a device nobody rotates (well past the credential lifetime). */
  readonly recordTtlMs: number;
}

const PLATFORMS = new Set(['ios', 'android', 'web', 'desktop']);
const ROTATE = /^\/app\/v1\/devices\/(dev_[A-Za-z0-9_-]{22})\/credential$/;
const ROTATION_POLICY: VerifyPolicy = {
  label: 'app',
  algorithms: new Set(['ecdsa-p256-sha256', 'ed25519']),
  maxAgeSec: 60,
  skewSec: 5,
  maxHeaderBytes: 4096,
  credentialHeader: undefined,
};

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** The listener; its handler reads the committed state, so a reload that keeps host and port keeps the socket. */
export class RegistrationServer {
  private state: RegistrationState | undefined;
  private constructor(private readonly server: Server, readonly host: string, readonly port: number) {}

  static async listen(host: string, port: number): Promise<RegistrationServer> {
    let self: RegistrationServer | undefined;
    const server = createServer((req, res) => void self?.handle(req, res));
    const bound = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
    self = new RegistrationServer(server, host, bound);
    return self;
  }

  use(state: RegistrationState): void {
    this.state = state;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const s = this.state;
    try {
      if (s === undefined) return send(res, 503, { error: 'unavailable', reason: 'registration is not configured yet' });
      const url = new URL(req.url ?? '/', 'http://registration.local');
      if (req.method !== 'POST') return send(res, 405, { error: 'method_not_allowed', reason: 'use POST' });
      const read = await readBoundedBody(req, s.maxBodyBytes);
      if (!read.ok) return send(res, 413, { error: 'too_large', reason: `the body is larger than ${s.maxBodyBytes} bytes` });
      const body = read.value;
      if (url.pathname === '/app/v1/devices') return await this.register(s, body, req, res);
      const m = ROTATE.exec(url.pathname);
      if (m) return await this.rotate(s, m[1]!, body, req, res);
      send(res, 404, { error: 'not_found', reason: `no registration endpoint ${url.pathname}` });
    } catch (err) {
      s?.logger.error({ err: (err as Error).message }, 'app registration failed');
      if (!res.headersSent) send(res, 503, { error: 'unavailable', reason: 'the device registry could not be reached; retry later' });
    }
  }

  private async register(s: RegistrationState, body: Buffer, req: IncomingMessage, res: ServerResponse): Promise<void> {
    let input: Record<string, unknown>;
    try {
      input = JSON.parse(body.toString('utf8'));
    } catch {
      return send(res, 400, { error: 'invalid_request', reason: 'the body must be JSON: {platform, publicKey, attestation}' });
    }
    const platform = input['platform'];
    if (typeof platform !== 'string' || !PLATFORMS.has(platform)) return send(res, 400, { error: 'invalid_request', reason: `platform must be one of ${[...PLATFORMS].join(', ')}` });
    const key = importDeviceKey(input['publicKey']);
    if (!key.ok) return send(res, 400, { error: 'invalid_request', reason: key.detail });
    const att = input['attestation'];
    if (typeof att !== 'object' || att === null || Array.isArray(att)) return send(res, 400, { error: 'invalid_request', reason: 'attestation must be an object with a format' });
    const format = (att as Record<string, unknown>)['format'];
    const verifier = typeof format === 'string' ? s.verifiers.get(format) : undefined;
    if (verifier === undefined) return send(res, 400, { error: 'invalid_request', reason: `attestation.format ${JSON.stringify(format)} is not accepted here (accepted: ${[...s.verifiers.keys()].join(', ') || 'none configured'})` });
    const r = await verifier.verify({ attestation: att as Record<string, unknown>, platform, jkt: key.jkt, jwk: key.jwk, nowMs: Date.now() });
    if (!r.ok) {
      s.logger.info({ log: 'audit', app_registration: 'refused', reason: r.reason, ip: req.socket.remoteAddress }, r.detail);
      return send(res, 403, { error: 'attestation_refused', reason: r.reason });
    }
    // A blocked user registers no new device (asked of the store, not only the cache: this is off the hot path).
    if (r.user !== undefined && (await s.engine.evaluate([{ kind: 'user', subject: r.user }], [], 1000)).blocked) return send(res, 403, { error: 'blocked', reason: 'blocked' });
    const id = `dev_${randomBytes(16).toString('base64url')}`;
    const now = Date.now();
    await s.engine.store.devices.put({ id, jwk: JSON.stringify(key.jwk), jkt: key.jkt, platform, attestation: r.level, attestedBy: r.attestedBy, user: r.user ?? '', status: 'active', counter: r.counter, createdAt: now, rotatedAt: now }, s.recordTtlMs);
    const issued = s.authority.issue({ deviceId: id, platform, attestation: r.level, user: r.user, jwk: key.jwk, jkt: key.jkt }, now);
    s.logger.info({ log: 'audit', app_registration: 'registered', device: id, platform, attestation: r.level, attestedBy: r.attestedBy }, 'device registered');
    send(res, 201, { deviceId: id, credential: issued.token, expiresAt: issued.expiresAt });
  }

  private async rotate(s: RegistrationState, id: string, body: Buffer, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rec = await s.engine.store.devices.get(id);
    if (rec === undefined) return send(res, 404, { error: 'unknown_device', reason: 'no such device (expired or never registered): register again' });
    if (rec.status !== 'active') return send(res, 403, { error: 'device_revoked', reason: 'device_revoked' });
    const key = importDeviceKey(JSON.parse(rec.jwk));
    if (!key.ok) return send(res, 500, { error: 'internal_error', reason: 'stored device key does not import' });
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    const host = headers['x-forwarded-host'] ?? headers['host'] ?? '';
    const scheme = headers['x-forwarded-proto'] ?? 'http';
    const v = verifyAppRequest({ method: req.method ?? 'POST', scheme, authority: host, target: req.url ?? '/', headers, body, ...bodyFacts(headers) }, key, ROTATION_POLICY);
    if (!v.ok) return send(res, 401, { error: 'invalid_signature', reason: v.reason });
    const claim = { key: `app-rotate:${id}:${digestText(v.nonce, 'base64url').slice(0, 22)}`, expiresAt: (v.expiresAtSec + 5) * 1000, minTtlMs: 6000 };
    const r = await s.engine.evaluate([{ kind: 'device', subject: id }], [], 1000, [claim]);
    if (r.blocked) return send(res, 403, { error: 'blocked', reason: 'blocked' });
    if (r.replayed) return send(res, 401, { error: 'invalid_signature', reason: 'signature_replayed' });
    const now = Date.now();
    await s.engine.store.devices.update(id, { rotatedAt: now });
    const issued = s.authority.issue({ deviceId: id, platform: rec.platform, attestation: rec.attestation, user: rec.user === '' ? undefined : rec.user, jwk: key.jwk, jkt: key.jkt }, now);
    s.logger.info({ log: 'audit', app_registration: 'rotated', device: id }, 'device credential re-issued');
    send(res, 200, { deviceId: id, credential: issued.token, expiresAt: issued.expiresAt });
  }
}
