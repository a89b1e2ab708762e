/**
 * The e2ee capability: the `e2ee` section (server keys, senders, limits), the
 * `e2ee` stage for Check chains, the key-config endpoint on the admin port,
 * and the ext_proc service (`envoy.service.ext_proc.v3.ExternalProcessor`)
 * served on the same gRPC server and port as Check: Envoy already has a
 * cluster for it (HTTP/2, one health check, one set of TLS/mTLS settings),
 * the processor and Check share the facts secret in memory, and one process
 * serves both. It needs `fds` for the single-use check of `enc` (one
 * round trip, in the FDS store).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Capability, Prepared } from '../capabilities/capability.js';
import { sendJson } from '../capabilities/admin-http.js';
import { ConfigError } from '../config/errors.js';
import { fdsCapability } from '../fds/capability.js';
import { e2eeConfigSchema, type E2eeConfig } from './config.js';
import { e2eeStage, refusalOutcomes } from './e2ee-stage.js';
import { reportOutcomes } from '../fds/report.js';
import { EXT_PROC_SERVICE_NAME, loadExtProcService } from './ext-proc-proto.js';
import { AEAD_IDS, encodeKeyConfigs, loadSenders, loadServerKeys } from './keys.js';
import { Opener } from './opener.js';
import { createProcessHandler } from './processor.js';
import { FdsReplayClaims, type ReplayClaims } from './replay.js';
import { MemoryStore } from '../fds/store/memory-store.js';
import { canonicalIp } from '../fds/subjects.js';
import type { E2eeState } from './state.js';
import { e2eeMetrics } from './metrics.js';

/** Headroom for the ext_proc message around the body (headers of the message itself). */
const MESSAGE_OVERHEAD_BYTES = 16 * 1024;
const MEMORY_REPLAY_BYTES = 16 * 1024 * 1024;

function readFactsSecret(path: string): Buffer {
  let secret: Buffer;
  try {
    secret = readFileSync(path);
  } catch (err) {
    throw new ConfigError('e2ee.factsSecretFile', [`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
  }
  const trimmed = Buffer.from(secret.toString('latin1').trim(), 'latin1');
  if (trimmed.length < 32) throw new ConfigError('e2ee.factsSecretFile', [`${path} holds ${trimmed.length} bytes; use at least 32 random bytes`]);
  return trimmed;
}

export const e2eeCapability: Capability<E2eeState> = {
  name: 'e2ee',
  needs: ['fds'],
  section: { key: 'e2ee', schema: e2eeConfigSchema },
  stages: [e2eeStage],
  grpcServices: [
    {
      name: EXT_PROC_SERVICE_NAME,
      load: loadExtProcService,
      implementation: (current, logger) => ({ Process: createProcessHandler(current, logger.child({ component: 'e2ee' })) }),
    },
  ],
  prepare(config, ctx): Prepared<E2eeState> {
    const settings: E2eeConfig | undefined = config.e2ee;
    const metrics = e2eeMetrics(ctx.metrics.registry);
    const previous = ctx.previous;
    if (settings === undefined) {
      const idle: E2eeState = {
        config: undefined,
        opener: undefined,
        factsSecret: previous?.factsSecret ?? randomBytes(32),
        outcomes: () => {},
        keys: [],
        keyConfigs: () => Buffer.alloc(0),
      };
      return { state: idle };
    }
    if (settings.maxBodyBytes + MESSAGE_OVERHEAD_BYTES > config.server.maxMessageBytes) {
      throw new ConfigError('e2ee.maxBodyBytes', [
        `${settings.maxBodyBytes} bytes do not fit one gRPC message of server.maxMessageBytes (${config.server.maxMessageBytes}) with ${MESSAGE_OVERHEAD_BYTES} bytes of headroom; raise server.maxMessageBytes or lower e2ee.maxBodyBytes`,
      ]);
    }
    let keys, senders;
    try {
      keys = loadServerKeys(settings, previous?.keys);
      senders = loadSenders(settings);
    } catch (err) {
      throw new ConfigError('e2ee', [(err as Error).message]);
    }
    const factsSecret = settings.factsSecretFile !== undefined ? readFactsSecret(settings.factsSecretFile) : (previous?.factsSecret ?? randomBytes(32));
    if (settings.factsSecretFile === undefined) {
      ctx.logger.warn('e2ee.factsSecretFile is not set: the facts secret is per process, so run one replica (or set it)');
    }
    const engine = ctx.dependency(fdsCapability).engine;
    // Without FDS, the FDS memory store's claims (bounded, refuse when full) in this process, kept across reloads.
    const localClaims = engine === undefined ? (previous?.localClaims ?? new MemoryStore(Date.now, MEMORY_REPLAY_BYTES)) : undefined;
    const replay: ReplayClaims = new FdsReplayClaims(engine?.store ?? localClaims!, settings.replayTimeoutMs);
    if (engine === undefined) ctx.logger.warn('e2ee: no fds section, so replayed bodies are caught in this process only and refusals are not counted');
    const opener = new Opener(settings, keys, senders, replay);
    const aeads = settings.aeads.map((a) => AEAD_IDS[a]);
    const state: E2eeState = {
      config: settings,
      opener,
      factsSecret,
      outcomes: (result) => metrics.inc({ result }),
      ...(localClaims !== undefined ? { localClaims } : {}),
      ...(engine !== undefined
        ? {
            blockedIp: (ip: string) => engine.cached('ip', canonicalIp(ip) ?? ip) !== undefined,
            refused: (reason: string, ip: string, sender: string) => void reportOutcomes(engine, refusalOutcomes(reason, ip, sender), settings.replayTimeoutMs),
          }
        : {}),
      keys,
      keyConfigs: (now) => encodeKeyConfigs(keys, aeads, now),
    };
    return {
      state,
      adminRoutes: [
        {
          method: 'GET',
          path: '/e2ee/keys',
          handler: (_req, res, url) => {
            const now = Date.now();
            if (url.searchParams.get('format') === 'json') {
              sendJson(res, 200, {
                contentType: settings.contentType,
                responseContentType: settings.responseContentType,
                keys: keys
                  .filter((k) => k.publish && k.decryptUntil > now)
                  .map((k) => ({ id: k.id, kem: 'X25519-HKDF-SHA256', kdf: 'HKDF-SHA256', aeads: settings.aeads, publicKey: k.publicKey.toString('base64url') })),
              }, { 'cache-control': 'max-age=300' });
              return;
            }
            const body = state.keyConfigs(now);
            res.writeHead(200, { 'content-type': 'application/ohttp-keys', 'content-length': body.length, 'cache-control': 'max-age=300' });
            res.end(body);
          },
        },
      ],
    };
  },
};
