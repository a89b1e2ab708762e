/**
 * The app-signature capability: the `app-signature` stage, the
 * `appSignature` section and the device registration listener. It needs fds:
 * the registry lives in the FDS store's Redis, a disabled device is an FDS
 * block, and each signature's nonce is a single-use claim burned in the fds
 * stage's one round trip.
 *
 * Prepare keeps the credential authority (and its verified-credential cache)
 * while its settings are unchanged, and the listener while host and port are
 * unchanged; a new listener is opened in prepare and closed again if the
 * config is rejected.
 */
import { readFileSync } from 'node:fs';
import type { Capability, Prepared } from '../capabilities/capability.js';
import { sendJson } from '../capabilities/admin-http.js';
import { ConfigError } from '../config/errors.js';
import { fdsCapability } from '../fds/capability.js';
import { appSignatureConfigSchema, appSignatureDefaults, type AppSignatureConfig } from './config.js';
import { appSignatureStage } from './app-signature-stage.js';
import { CredentialAuthority } from './credential.js';
import { loadAuthorities, offlineVerifier, type AttestationVerifier } from './attestation.js';
import { RegistrationServer } from './registration.js';
import type { AppSignatureState } from './state.js';

/** A device nobody rotates stays in the registry this long. */
const RECORD_TTL_MS = 90 * 86_400_000;

interface Kept {
  readonly authority: CredentialAuthority;
  readonly authorityId: string;
  readonly server: RegistrationServer | undefined;
}

const held = new WeakMap<AppSignatureState, Kept>();

/** A config error whose line names the key (the service reports it under the config's source). */
function keyError(key: string, message: string): ConfigError {
  return new ConfigError(key, [`${key}: ${message}`]);
}

function credentialPem(c: AppSignatureConfig['credentials']): string | undefined {
  if (c.keyFile !== undefined) {
    try {
      return readFileSync(c.keyFile, 'utf8');
    } catch (err) {
      throw keyError('appSignature.credentials.keyFile', `cannot read ${c.keyFile}: ${(err as Error).message}`);
    }
  }
  if (c.keyEnv !== undefined) {
    const v = process.env[c.keyEnv];
    if (v === undefined || v.trim() === '') throw keyError('appSignature.credentials.keyEnv', `environment variable ${c.keyEnv} is empty or unset`);
    return v;
  }
  return undefined;
}

export const appSignatureCapability: Capability<AppSignatureState> = {
  name: 'app-signature',
  needs: ['fds'],
  section: { key: 'appSignature', schema: appSignatureConfigSchema },
  stages: [appSignatureStage],
  async prepare(config, ctx): Promise<Prepared<AppSignatureState>> {
    const fds = ctx.dependency(fdsCapability);
    const section = config.appSignature ?? appSignatureDefaults();
    const prev = ctx.previous ? held.get(ctx.previous) : undefined;
    const c = section.credentials;
    const authorityId = JSON.stringify([c, section.cache]);
    let authority = prev?.authorityId === authorityId ? prev.authority : undefined;
    if (authority === undefined) {
      const pem = credentialPem(c);
      try {
        authority = pem === undefined ? CredentialAuthority.ephemeral(c.issuer, c.ttl / 1000, section.cache) : CredentialAuthority.fromPem(pem, c.issuer, c.ttl / 1000, section.cache);
      } catch (err) {
        throw keyError(`appSignature.credentials.${c.keyFile !== undefined ? 'keyFile' : 'keyEnv'}`, `the credential key does not load: ${(err as Error).message}`);
      }
      if (pem === undefined && config.appSignature !== undefined) ctx.logger.warn('appSignature.credentials has no keyFile/keyEnv: device credentials are signed with a key of this process only (development; other replicas and restarts refuse them)');
    }
    let verifiers: Map<string, AttestationVerifier>;
    try {
      verifiers = new Map([['offline', offlineVerifier(loadAuthorities(section))]]);
    } catch (err) {
      // The message names the authority's key already.
      throw new ConfigError('appSignature.registration.authorities', [(err as Error).message]);
    }
    // The listener only runs for a config that has the section and somewhere to store devices.
    const wantServer = config.appSignature !== undefined && fds.engine !== undefined;
    const l = section.registration.listen;
    let server = wantServer && prev?.server && prev.server.host === l.host && (l.port === 0 || prev.server.port === l.port) ? prev.server : undefined;
    let opened: RegistrationServer | undefined;
    if (wantServer && server === undefined) {
      try {
        server = opened = await RegistrationServer.listen(l.host, l.port);
      } catch (err) {
        throw keyError('appSignature.registration.listen', `cannot listen on ${l.host}:${l.port}: ${(err as Error).message}`);
      }
      ctx.logger.info({ host: l.host, port: server.port }, 'app registration listening');
    }
    const state: AppSignatureState = { authority, fds };
    held.set(state, { authority, authorityId, server });
    const engine = fds.engine;
    const info = {
      registration: server ? { host: server.host, port: server.port, paths: ['POST /app/v1/devices', 'POST /app/v1/devices/<id>/credential'] } : null,
      credentials: { issuer: authority.issuer, kid: authority.kid, ttlSeconds: authority.ttlSec },
    };
    return {
      state,
      // Where registration listens and which key signs credentials (no secret): for operators and `npm start`.
      adminRoutes: [{ method: 'GET', path: '/admin/app-signature', handler: (_req, res) => sendJson(res, 200, { ...info, cachedCredentials: authority!.cached }) }],
      commit() {
        if (server && engine) server.use({ authority: authority!, engine, verifiers, maxBodyBytes: section.registration.maxBodyBytes, logger: ctx.logger.child({ component: 'app-registration' }), recordTtlMs: RECORD_TTL_MS });
      },
      discard: async () => {
        await opened?.close();
      },
      retire: async (next) => {
        const mine = held.get(state)?.server;
        if (mine && held.get(next)?.server !== mine) await mine.close();
      },
      close: async () => {
        await held.get(state)?.server?.close();
      },
    };
  },
};
