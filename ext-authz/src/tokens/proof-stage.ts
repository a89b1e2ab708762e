/**
 * The `proof` stage: a per-request proof JWT, in one of two modes on the
 * same flow: `dpop` (RFC 9449) or `request-jwt` (a registered client signs
 * each request). The proof is verified in `run`; its jti is burned last:
 *
 * - With an `fds` stage earlier in the chain (the usual `[fds, jwt, proof,
 *   passport]`), the claim is left in the context and the fds stage's
 *   finish sends it in the Check's single EVALSHA (block checks, counters
 *   and claim together), only if the decision is still an allow.
 * - Without one, this stage's finish sends the claim alone: still one round
 *   trip, still only after every other stage allowed.
 *
 * A replay is a 401 `proof_replayed` and the FDS event `proof_replay` for
 * the IP, the user and the proof key/client, counted in that same call.
 */
import { z } from 'zod';
import { digestText } from '../pipeline/text.js';
import { CONTINUE, deny, fail, type Decision, type Denial, type StageResult } from '../pipeline/decision.js';
import type { CheckContext, Outcome, RouteInfo } from '../pipeline/context.js';
import type { FinishResult, Stage, StageDefinition } from '../stages/stage.js';
import { headerNameSchema } from '../config/common.js';
import { duration } from '../fds/config.js';
import { pendingClaims } from '../fds/claims.js';
import { PENDING_CLAIMS, type PendingClaims } from '../fds/facts.js';
import { JWS_ALGORITHMS } from './algorithms.js';
import { verifyDpop, type DpopOptions } from './dpop.js';
import { verifyRequestJwt, type ClientRuntime, type RequestJwtOptions } from './request-jwt.js';
import { requestHtu } from './htu.js';
import { accessToken, stripHeader } from './access-token.js';
import { identityFromClaims } from './identity.js';
import type { ProofFailure, ProofResult, VerifiedProof } from './proof-result.js';
import type { TokensState } from './state.js';
import { tokensConfigSchema } from './config.js';

const schema = z
  .strictObject({
    type: z.literal('proof'),
    mode: z.enum(['dpop', 'request-jwt']),
    /** Header carrying the proof: `dpop` / `request-jwt` by default. */
    header: headerNameSchema.optional(),
    /** dpop: accepted proof algorithms (pinned; never from the proof). */
    algorithms: z.array(z.enum(JWS_ALGORITHMS)).min(1).default(['ES256', 'EdDSA']),
    /** dpop: how old a proof's iat may be. */
    maxAge: duration(1_000, 600_000).default(60_000),
    /** request-jwt: the most `exp - iat` may span. */
    maxLifetime: duration(1_000, 600_000).default(60_000),
    clockSkew: duration(0, 60_000).default(5_000),
    maxBytes: z.number().int().min(256).max(16 * 1024).default(4096),
    /** dpop: require server nonces (401 use_dpop_nonce; fresh ones on every OK via DPoP-Nonce). */
    nonce: z.boolean().default(false),
    /** dpop: a proof alone is not enough; an access token (from a jwt stage) must be bound to it. */
    requireAccessToken: z.boolean().default(true),
    /** request-jwt: names in `tokens.clients`. */
    clients: z.array(z.string().min(1)).min(1).optional(),
    /** request-jwt: expected `typ` header. */
    typ: z.string().min(1).default('request+jwt'),
    strip: z.boolean().default(true),
  })
  .refine((o) => o.mode !== 'request-jwt' || o.clients !== undefined, { message: 'request-jwt mode needs clients (names in tokens.clients)', path: ['clients'] });
type Options = z.infer<typeof schema>;

const hashJti = (jti: string) => digestText(jti, 'base64url').slice(0, 22);

/** Whether an fds stage sits before `self` on the route (its finish then runs after ours and sends the claim). */
const fdsBefore = new WeakMap<RouteInfo, boolean>();
function hasFdsBefore(route: RouteInfo, self: Stage): boolean {
  let v = fdsBefore.get(route);
  if (v === undefined) {
    const i = route.stages.indexOf(self);
    v = route.stages.some((s, j) => s.type === 'fds' && j < i);
    fdsBefore.set(route, v);
  }
  return v;
}

function noFdsStore(path: string): never {
  throw new Error(`${path}: a proof stage keeps its replay cache in the FDS store; add an fds section (store: memory or redis)`);
}

export const proofStage: StageDefinition<Options, TokensState> = {
  type: 'proof',
  schema,
  events: [
    { event: 'bad_proof', kinds: ['ip'] },
    { event: 'proof_replay', kinds: ['ip', 'client', 'user'] },
  ],
  description: 'Verify a per-request proof JWT (DPoP per RFC 9449, or a client-signed request JWT) and burn its jti once per target, in the Check\'s one FDS round trip.',
  validate(options, config) {
    return (options.clients ?? []).filter((n) => config.tokens?.clients[n] === undefined).map((n) => `clients: "${n}" is not defined in tokens.clients`);
  },
  create(options, factory): Stage {
    const runtime = factory.state.runtime;
    // Without a tokens section (a DPoP-only route) the section's defaults apply.
    const tokens = factory.config.tokens ?? tokensConfigSchema.parse({})!;
    const fdsEngine = factory.state.fds.engine ?? noFdsStore(factory.path);
    const dpop = options.mode === 'dpop';
    const header = options.header ?? (dpop ? 'dpop' : 'request-jwt');
    const algs = options.algorithms.join(' ');
    const nonce = dpop && options.nonce ? runtime.nonceMint(tokens) : undefined;
    const keyCache = runtime.proofKeyCache(tokens);
    const dpopOptions: DpopOptions = { algorithms: new Set(options.algorithms), maxAgeSec: options.maxAge / 1000, skewSec: options.clockSkew / 1000, maxBytes: options.maxBytes, maxJtiLength: 256, nonce };
    const clients: ClientRuntime[] = (options.clients ?? []).map((n) => runtime.client(tokens, n));
    for (const c of clients) if (c.keys.remote && c.keys.size === 0) void c.keys.refresh();
    const rjwtOptions: RequestJwtOptions = { typ: options.typ.toLowerCase(), maxLifetimeSec: options.maxLifetime / 1000, skewSec: options.clockSkew / 1000, maxBytes: options.maxBytes, maxJtiLength: 256 };
    const challenge = (error: string, description?: string) =>
      dpop ? `DPoP error="${error}"${description ? `, error_description="${description}"` : ''}, algs="${algs}"` : `RequestJWT error="${error}"`;
    const replayDenial: Denial = Object.freeze({ status: 401, reason: 'proof_replayed', detail: 'proof: this proof (jti) was used before', challenge: challenge(dpop ? 'invalid_dpop_proof' : 'invalid_token', 'proof replayed') });
    const noToken = deny(401, 'token_missing', 'proof: dpop mode needs an access token (a jwt stage before this one)', { challenge: dpop ? `DPoP algs="${algs}"` : 'RequestJWT' });
    const stage: Stage = { type: 'proof', run, finish };

    function rejected(ctx: CheckContext, r: ProofFailure): StageResult {
      if (r.unavailable) return fail(r.reason, `proof: ${r.detail}`);
      ctx.report('bad_proof', 'ip', ctx.request.source.address);
      ctx.audit['proof'] = { reason: r.reason };
      const extra: Partial<Denial> = { challenge: challenge(r.error, r.error === 'use_dpop_nonce' ? 'nonce required' : undefined) };
      if (r.error === 'use_dpop_nonce' && nonce) (extra as { headers: [string, string][] }).headers = [['dpop-nonce', nonce.current()]];
      return deny(401, r.reason, `proof: ${r.detail}`, extra);
    }

    function accepted(ctx: CheckContext, r: ProofResult): StageResult {
      if (!r.ok) return rejected(ctx, r);
      const p: VerifiedProof = r.proof;
      if (!dpop) {
        const client = clients.find((c) => c.name === p.keyId)!;
        const id = identityFromClaims(p.claims, client.config.identity, 'request-jwt');
        if (ctx.identity === undefined) {
          if (id !== undefined) ctx.identity = id;
        } else if (id !== undefined && id.subject !== ctx.identity.subject) {
          return rejected(ctx, { ok: false, reason: 'proof_subject_mismatch', detail: 'request JWT sub is not the access token subject', error: 'invalid_token' });
        }
      } else {
        const fact = accessToken(ctx);
        if (fact) fact.bindingVerified = true;
        if (nonce) ctx.addResponseHeader('dpop-nonce', nonce.current());
      }
      const outcomes: Outcome[] = [{ event: 'proof_replay', subjectKind: 'ip', subject: ctx.request.source.address }, { event: 'proof_replay', subjectKind: 'client', subject: dpop ? `jkt:${p.scope}` : p.scope }];
      if (ctx.identity && ctx.identity.kind !== 'anonymous') outcomes.push({ event: 'proof_replay', subjectKind: 'user', subject: ctx.identity.subject });
      // Scoped by target (the gateway) and key/client: one proof is good once per gateway, whatever the URL.
      const pending: PendingClaims = {
        claims: [{ key: `${dpop ? 'dpop' : 'rjwt'}:${ctx.gateway.name}:${p.scope}:${hashJti(p.jti)}`, expiresAt: p.expiresAt, minTtlMs: options.clockSkew + 1000 }],
        replayDenial,
        replayOutcomes: outcomes,
        sent: false,
      };
      ctx.set(PENDING_CLAIMS, pending);
      ctx.audit['proof'] = { mode: options.mode, key: p.keyId };
      if (options.strip) stripHeader(ctx, header);
      return CONTINUE;
    }

    function run(ctx: CheckContext): StageResult | Promise<StageResult> {
      const v = ctx.request;
      const htu = requestHtu(v.scheme, v.headers[':authority'] ?? v.headers['host'] ?? v.host, v.path);
      if (htu === undefined) return rejected(ctx, { ok: false, reason: 'proof_wrong_url', detail: 'request has no usable scheme/authority/path to bind a proof to', error: 'invalid_request' });
      const raw = v.headers[header];
      if (dpop) {
        const fact = accessToken(ctx);
        if (fact === undefined && options.requireAccessToken) return noToken;
        return accepted(ctx, verifyDpop({ proof: raw, method: v.method, htu, ...(fact ? { accessToken: fact.token, ...(fact.jkt ? { boundJkt: fact.jkt } : {}) } : {}) }, dpopOptions, keyCache));
      }
      const r = verifyRequestJwt({ token: raw, method: v.method, htu }, clients, rjwtOptions);
      if ((r as Promise<ProofResult>).then === undefined) return accepted(ctx, r as ProofResult);
      return (r as Promise<ProofResult>).then((x) => accepted(ctx, x));
    }

    function finish(ctx: CheckContext, decision: Decision): FinishResult | Promise<FinishResult> {
      if (decision.kind !== 'allow') return;
      const pending = pendingClaims(ctx);
      if (pending === undefined || hasFdsBefore(ctx.route, stage)) return;
      // No fds stage will run after us: burn the jti ourselves, one round trip.
      pending.sent = true;
      const left = ctx.remainingMs();
      if (left <= 1) return fail('replay_cache_unavailable', 'proof: no time left to record the proof');
      return fdsEngine.evaluate([], [], Math.max(1, left - Math.max(2, Math.floor(left / 20))), pending.claims).then(
        (res): FinishResult => {
          if (!res.replayed) return undefined;
          for (const o of pending.replayOutcomes) ctx.report(o.event, o.subjectKind, o.subject);
          return { kind: 'deny', denial: pending.replayDenial };
        },
        (err: unknown) => fail('replay_cache_unavailable', `proof: ${err instanceof Error ? err.message : String(err)}`),
      );
    }

    return stage;
  },
};
