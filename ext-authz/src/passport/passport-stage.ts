/**
 * The `passport` stage: turns the identity an earlier stage established
 * (ctx.identity) into a signed Passport on the upstream request. Warm path:
 * a source cache hit and an issuer cache hit, both synchronous, no crypto.
 */
import { z } from 'zod';
import { CONTINUE, deny, fail, type StageResult } from '../pipeline/decision.js';
import type { CheckContext, Identity } from '../pipeline/context.js';
import type { StageDefinition } from '../stages/stage.js';
import type { AuthLevel, PassportDevice, PassportUser } from './model.js';
import { authLevelSchema } from './config.js';
import { checkClaimValue } from './claims.js';
import type { IssuedPassport } from './issuer.js';
import type { LookupResult } from './sources/cached-http.js';
import type { SourceFacts } from './sources/source.js';
import { requirePassportState, type PassportState } from './runtime.js';
import { PASSPORT_CLAIMS, RELAY, type RelayAttribute } from './facts.js';
import { VERIFIED_DEVICE } from '../pipeline/facts.js';

const LEVEL_RANK: Record<AuthLevel, number> = { LOW: 0, HIGH: 1, HIGHEST: 2 };

/** Device `type` for a verified (app-signature) platform. */
const DEVICE_TYPES: Readonly<Record<string, string>> = { ios: 'mobile', android: 'mobile', web: 'browser', desktop: 'desktop' };

/** The issuer-cache key last built for one facts object, with the request values it was built from. */
interface KeyMemo {
  readonly deviceId: string;
  readonly method: string;
  readonly source: string;
  readonly relayKey: string | undefined;
  readonly key: string;
}

const schema = z.strictObject({
  type: z.literal('passport'),
  /** No identity (or an anonymous one): deny with 401 (default), or continue without a Passport. */
  whenNoIdentity: z.enum(['deny', 'skip']).default('deny'),
  /** Deny (403 insufficient_auth_level) below this level: for routes that need a step-up. */
  minAuthLevel: authLevelSchema.optional(),
});
type Options = z.infer<typeof schema>;

const NO_IDENTITY = deny(401, 'no_identity', 'passport stage: no identity stage established who is calling');
const UNKNOWN_USER = deny(403, 'unknown_user', 'passport source does not know this user');
const SESSION_EXPIRED = deny(401, 'session_expired', 'passport source says the user session has expired');

class PassportStage {
  readonly type = 'passport';
  /** A Map, not the config object: an auth method named `constructor` must not find Object.prototype. */
  private readonly levels: ReadonlyMap<string, AuthLevel>;
  private readonly header: string;
  private readonly minRank: number;
  private readonly insufficient: StageResult;
  /**
   * Building and hashing the key string is most of a warm Check's cost, so
   * the last key is kept per facts object (the source hands out the same
   * object while it caches it) and reused when the request values match.
   */
  private readonly keys = new WeakMap<SourceFacts, KeyMemo>();

  constructor(
    private readonly options: Options,
    private readonly state: PassportState,
  ) {
    this.levels = new Map(Object.entries(state.config.authLevels));
    this.header = state.config.header;
    this.minRank = options.minAuthLevel === undefined ? -1 : LEVEL_RANK[options.minAuthLevel];
    this.insufficient = deny(403, 'insufficient_auth_level', `route needs auth level ${options.minAuthLevel ?? 'LOW'}`);
  }

  run(ctx: CheckContext): StageResult | Promise<StageResult> {
    const id = ctx.identity;
    if (id === undefined || id.kind === 'anonymous') return this.options.whenNoIdentity === 'deny' ? NO_IDENTITY : CONTINUE;
    const method = id.attributes['authMethod'] ?? id.source;
    const level = this.levels.get(method) ?? this.levels.get(id.source) ?? 'LOW';
    if (LEVEL_RANK[level] < this.minRank) return this.insufficient;
    const nowMs = Date.now();
    const found = this.state.source.lookup(id, ctx.remainingMs(nowMs));
    if (found instanceof Promise) return found.then((r) => this.withFacts(ctx, id, method, level, r, Date.now()));
    return this.withFacts(ctx, id, method, level, found, nowMs);
  }

  private withFacts(
    ctx: CheckContext,
    id: Identity,
    method: string,
    level: AuthLevel,
    r: LookupResult<SourceFacts>,
    nowMs: number,
  ): StageResult | Promise<StageResult> {
    if (r.kind === 'not_found') return UNKNOWN_USER;
    if (r.kind === 'error') return fail('passport_source_unavailable', r.detail);
    if (r.stale) ctx.audit['passport_source'] = 'stale';
    const facts = r.value;
    if (facts.user.expires !== undefined && facts.user.expires * 1000 <= nowMs) return SESSION_EXPIRED;
    const relay = ctx.get(RELAY);
    const key = this.keyFor(facts, id, method, level, relay, ctx);
    const hit = this.state.issuer.cached(key, nowMs);
    if (hit !== undefined) return this.inject(ctx, hit);
    return this.issue(ctx, key, id, method, level, facts, relay, nowMs);
  }

  /** Passport cache key: facts fingerprint, device, auth method, level, identity source, relay facts. */
  private keyFor(facts: SourceFacts, id: Identity, method: string, level: AuthLevel, relay: RelayAttribute | undefined, ctx: CheckContext): string {
    // A device that signed the request outranks the source's device (its id, platform and level are verified).
    const v = ctx.get(VERIFIED_DEVICE);
    const deviceId = v !== undefined ? `v\u0000${v.id}\u0000${v.platform}\u0000${v.attestation}` : facts.device?.id ?? id.deviceId ?? '';
    const relayKey = relay?.key;
    const m = this.keys.get(facts);
    // `level` follows from method and source (this stage's levels map is fixed), so it needs no comparison.
    if (m !== undefined && m.deviceId === deviceId && m.method === method && m.source === id.source && m.relayKey === relayKey) return m.key;
    const key = `${facts.fingerprint}\u0000${deviceId}\u0000${method}\u0000${level}\u0000${id.source}${relayKey === undefined ? '' : `\u0000${relayKey}`}`;
    this.keys.set(facts, { deviceId, method, source: id.source, relayKey, key });
    return key;
  }

  /** Cold path: validate identity-derived values once, then sign. */
  private issue(
    ctx: CheckContext,
    key: string,
    id: Identity,
    method: string,
    level: AuthLevel,
    facts: SourceFacts,
    relay: RelayAttribute | undefined,
    nowMs: number,
  ): StageResult | Promise<StageResult> {
    const max = this.state.config.limits.maxValueLength;
    for (const [what, v] of [['identity source', id.source], ['auth method', method], ['device id', id.deviceId]] as const) {
      if (v === undefined) continue;
      const why = checkClaimValue(v, max);
      if (why !== undefined) return deny(403, 'identity_not_representable', `${what} ${why}`);
    }
    const now = Math.floor(nowMs / 1000);
    let exp = now + this.state.config.ttlSeconds;
    if (facts.user.expires !== undefined && facts.user.expires < exp) exp = facts.user.expires;
    if (facts.device?.expires !== undefined && facts.device.expires > now && facts.device.expires < exp) exp = facts.device.expires;
    const user: PassportUser = {
      id: facts.user.id,
      source: id.source,
      authMethod: method,
      authLevel: level,
      roles: facts.user.roles,
      scopes: facts.user.scopes,
      created: facts.user.created ?? facts.fetchedAt,
      expires: exp,
    };
    const d = facts.device;
    const verified = ctx.get(VERIFIED_DEVICE);
    let device: PassportDevice | undefined;
    if (verified !== undefined) {
      for (const [what, x] of [['device platform', verified.platform], ['device attestation', verified.attestation]] as const) {
        const why = checkClaimValue(x, max);
        if (why !== undefined) return deny(403, 'identity_not_representable', `${what} ${why}`);
      }
      const same = d !== undefined && d.id === verified.id ? d : undefined;
      device = {
        id: verified.id,
        type: DEVICE_TYPES[verified.platform] ?? 'unknown',
        ...(same?.os !== undefined ? { os: same.os } : {}),
        ...(same?.appVersion !== undefined ? { appVersion: same.appVersion } : {}),
        platform: verified.platform,
        attestation: verified.attestation,
        created: same?.created ?? facts.fetchedAt,
        expires: exp,
      };
    } else if (d !== undefined) {
      device = {
        id: d.id,
        type: d.type,
        ...(d.os !== undefined ? { os: d.os } : {}),
        ...(d.appVersion !== undefined ? { appVersion: d.appVersion } : {}),
        created: d.created ?? facts.fetchedAt,
        expires: exp,
      };
    } else if (id.deviceId !== undefined) {
      device = { id: id.deviceId, type: 'unknown', created: facts.fetchedAt, expires: exp };
    }
    return this.state.issuer
      .sign(key, { now, exp, user, device, relay: relay && Object.keys(relay.claims).length > 0 ? relay.claims : undefined, relayMissing: relay?.missing })
      .then(
        (issued) => this.inject(ctx, issued),
        (err: unknown) => fail('passport_sign_failed', (err as Error).message),
      );
  }

  private inject(ctx: CheckContext, issued: IssuedPassport): StageResult {
    ctx.setUpstreamHeader(this.header, issued.token);
    ctx.set(PASSPORT_CLAIMS, issued.claims);
    ctx.audit['passport'] = issued.audit;
    return CONTINUE;
  }
}

export const passportStage: StageDefinition<Options, PassportState | undefined> = {
  type: 'passport',
  schema,
  description: 'Issue a signed Passport (user + device facts) for ctx.identity and set it on the upstream request.',
  create: (options, f) => new PassportStage(options, requirePassportState(f, 'passport')),
  validate(_options, config) {
    const p = config.passport;
    if (p === undefined) return ['the passport stage needs the top-level "passport" section (issuer, audience, keys, source)'];
    // Checked here, not in the passport schema: headers.internal is a sibling section.
    if (!config.headers.internal.includes(p.header)) return [`passport.header "${p.header}" must be listed in headers.internal, or clients could forge it`];
    return [];
  },
};
