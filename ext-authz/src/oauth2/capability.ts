/**
 * The oauth2 capability: the `oauth2` stage, the `oauth2` section, and
 * /admin/oauth2 (revocation, statistics). Prepare resolves the gateway's
 * client secrets and the admin token (a missing one rejects the config,
 * naming the key), builds one AuthServer per configured server, and takes
 * the grant cache and the Redis revocation channel over from the previous
 * state when their settings did not change. Discovery happens on first use,
 * so an authorization server that is down at start does not stop Passgate.
 */
import { readFileSync } from 'node:fs';
import type { Capability, Prepared } from '../capabilities/capability.js';
import { oauth2ConfigSchema, type OAuth2Config } from './config.js';
import { AuthServer } from './auth-server.js';
import { GrantCache } from './cache.js';
import { RevocationBus, type Revocation } from './revocation.js';
import { applyRevocation, type OAuth2State } from './state.js';
import { oauth2AdminRoutes } from './admin-api.js';
import { oauth2Stage } from './oauth2-stage.js';

const DEFAULT_LIMITS = { maxTtlMs: 60_000, negativeTtlMs: 5_000, staleIfErrorMs: 0, maxEntries: 50_000, maxBytes: 32 * 1024 * 1024 };

function secretOf(ref: { secret?: string | undefined; secretEnv?: string | undefined; secretFile?: string | undefined }, key: string): string {
  if (ref.secret !== undefined) return ref.secret;
  if (ref.secretEnv !== undefined) {
    const v = process.env[ref.secretEnv];
    if (v === undefined || v === '') throw new Error(`${key}.secretEnv: environment variable ${ref.secretEnv} is not set`);
    return v;
  }
  try {
    const v = readFileSync(ref.secretFile!, 'utf8').trim();
    if (v === '') throw new Error('the file is empty');
    return v;
  } catch (err) {
    throw new Error(`${key}.secretFile: cannot read ${ref.secretFile}: ${(err as Error).message}`);
  }
}

function adminTokenOf(c: OAuth2Config | undefined): Buffer | undefined {
  if (c === undefined) return undefined;
  const a = c.admin;
  if (a.token) return Buffer.from(a.token);
  const env = process.env[a.tokenEnv];
  if (env) return Buffer.from(env);
  if (a.tokenFile) return Buffer.from(secretOf({ secretFile: a.tokenFile }, 'oauth2.admin'));
  return undefined;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export const oauth2Capability: Capability<OAuth2State> = {
  name: 'oauth2',
  section: { key: 'oauth2', schema: oauth2ConfigSchema },
  stages: [oauth2Stage],
  async prepare(config, ctx): Promise<Prepared<OAuth2State>> {
    const c = config.oauth2 ?? undefined;
    const prev = ctx.previous;
    const servers = new Map<string, AuthServer>();
    for (const [name, s] of Object.entries(c?.servers ?? {})) {
      if (s.allowInsecureHttp === false && [s.issuer, s.introspectionEndpoint, s.tokenEndpoint, s.revocationEndpoint].some((u) => u?.startsWith('http:'))) {
        throw new Error(`oauth2.servers.${name}: http:// endpoints need allowInsecureHttp: true (credentials would travel in the clear)`);
      }
      servers.set(name, new AuthServer(name, s, secretOf(s.client, `oauth2.servers.${name}.client`)));
    }
    const adminToken = adminTokenOf(c);
    const limits = c?.cache ?? DEFAULT_LIMITS;
    const tombstoneMs = c?.revocation.tombstoneMs ?? 86_400_000;
    const keepCache = prev !== undefined && sameJson(prev.cache.limits, limits);
    const cache = keepCache ? prev.cache : new GrantCache(limits, tombstoneMs);
    const onMessage = (r: Revocation): void => void applyRevocation(cache, r);
    const url = c?.revocation.redisUrl;
    const channel = c?.revocation.channel ?? '';
    const keepBus = prev?.bus !== undefined && url !== undefined && prev.bus.url === url && prev.bus.channel === channel;
    const bus = keepBus ? prev.bus : url !== undefined ? await RevocationBus.open(url, channel, ctx.logger, onMessage) : undefined;
    const state: OAuth2State = {
      config: c,
      servers,
      cache,
      clients: new Map(Object.entries(c?.clients ?? {})),
      unknownClients: c?.unknownClients ?? 'allow',
      bus,
      async revoke(r) {
        const dropped = applyRevocation(cache, r);
        let replicas: number | undefined;
        if (bus !== undefined) {
          try {
            replicas = await bus.publish(r);
          } catch (err) {
            ctx.logger.warn({ err: (err as Error).message }, 'oauth2 revocation: publish failed; only this replica revoked');
          }
        }
        return { dropped, replicas };
      },
    };
    return {
      state,
      adminRoutes: c === undefined ? [] : oauth2AdminRoutes(state, adminToken, ctx.logger),
      commit: () => {
        if (keepBus) bus!.retarget(onMessage);
        if (!keepCache && prev !== undefined) prev.cache.clear();
      },
      discard: () => {
        if (bus !== undefined && !keepBus) bus.close();
      },
      retire: (next) => {
        if (bus !== undefined && next.bus !== bus) bus.close();
      },
      close: () => bus?.close(),
    };
  },
};
