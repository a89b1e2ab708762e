/**
 * The oidc capability: the `oidc` stage and the `oidc` section. It needs fds
 * because sessions live in the FDS store (one Redis connection, and a warm
 * session's check rides in the Check's one store call). Prepare takes the
 * providers (their discovered metadata) and the session cache over from the
 * serving state when their settings and the store did not change.
 */
import type { Capability, Prepared } from '../capabilities/capability.js';
import { ConfigError } from '../config/errors.js';
import { fdsCapability } from '../fds/capability.js';
import { oidcConfigSchema } from './config.js';
import { oidcStage } from './oidc-stage.js';
import { OidcProvider } from './provider.js';
import { SessionManager } from './sessions.js';
import type { OidcState } from './state.js';

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export const oidcCapability: Capability<OidcState> = {
  name: 'oidc',
  needs: ['fds'],
  section: { key: 'oidc', schema: oidcConfigSchema },
  stages: [oidcStage],
  prepare(config, ctx): Prepared<OidcState> {
    const c = config.oidc;
    const prev = ctx.previous;
    if (c === undefined) return { state: { providers: new Map(), sessions: undefined } };
    const engine = ctx.dependency(fdsCapability).engine;
    if (engine === undefined) {
      throw new ConfigError('oidc', ['sessions live in the FDS store: add an `fds:` section (fds.store: redis and fds.redis for more than one replica)']);
    }
    const providers = new Map<string, OidcProvider>();
    const problems: string[] = [];
    for (const [name, p] of Object.entries(c.providers)) {
      const old = prev?.providers.get(name);
      try {
        providers.set(name, old !== undefined && sameJson(old.config, p) ? old : new OidcProvider(name, p));
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    if (problems.length > 0) throw new ConfigError('oidc', problems);
    const keep = prev?.sessions !== undefined && sameJson(prev.sessions.settings, c.session) && prev.sessions.store === engine.store;
    const sessions = keep ? prev.sessions! : new SessionManager(c.session, engine, providers, ctx.logger.child({ component: 'oidc' }));
    if (keep) sessions.retarget(providers);
    return { state: { providers, sessions } };
  },
};
