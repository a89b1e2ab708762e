/**
 * The `jwt` stage: a bearer access token from `Authorization` (Bearer or
 * DPoP scheme), a header or a cookie, verified against the route's issuers,
 * mapped to ctx.identity. The token is removed before upstream by default:
 * services get the Passport, not the user's token.
 */
import { z } from 'zod';
import { CONTINUE, deny, type StageResult } from '../pipeline/decision.js';
import type { CheckContext } from '../pipeline/context.js';
import type { Stage, StageDefinition } from '../stages/stage.js';
import { headerNameSchema } from '../config/common.js';
import { verifyJwt, type IssuerRuntime, type JwtResult } from './jwt-verifier.js';
import { identityFromClaims } from './identity.js';
import { stripHeader } from './access-token.js';
import { ACCESS_TOKEN, type AccessTokenFact } from './facts.js';
import type { TokensState } from './state.js';

const source = z.union([z.strictObject({ header: headerNameSchema }), z.strictObject({ cookie: z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/) })]);

const schema = z.strictObject({
  type: z.literal('jwt'),
  /** Names in `tokens.issuers`. */
  issuers: z.array(z.string().min(1)).min(1),
  /** Where the token is looked for, in order; `authorization` takes `Bearer` and `DPoP` schemes. */
  from: z.array(source).min(1).default([{ header: 'authorization' }]),
  /** Remove the token before upstream. */
  strip: z.boolean().default(true),
  /** No token at all: 401 (default), or go on without identity (a later stage decides). */
  whenMissing: z.enum(['deny', 'skip']).default('deny'),
});
type Options = z.infer<typeof schema>;

const BEARER_CHALLENGE = 'Bearer realm="passgate"';

interface Found {
  readonly token: string;
  readonly scheme: 'bearer' | 'dpop';
  readonly from: { header: string } | { cookie: string };
}

function cookieValue(header: string, name: string): string | undefined {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export const jwtStage: StageDefinition<Options, TokensState> = {
  type: 'jwt',
  schema,
  events: [{ event: 'bad_token', kinds: ['ip'] }],
  description: 'Verify a bearer JWT (pinned algorithms, JWKS/discovery/static keys, iss/aud/exp/nbf, claim predicates) and map its claims to the identity.',
  validate(options, config) {
    return options.issuers.filter((n) => config.tokens?.issuers[n] === undefined).map((n) => `issuers: "${n}" is not defined in tokens.issuers`);
  },
  create(options, factory): Stage {
    const runtime = factory.state.runtime;
    const tokens = factory.config.tokens;
    if (!tokens) throw new Error(`${factory.path}: a jwt stage needs a tokens.issuers section`);
    const issuers: IssuerRuntime[] = options.issuers.map((n) => runtime.issuer(tokens, n));
    const verified = runtime.verifiedTokens(tokens);
    // Warm the key sets so the first Check does not wait for a fetch.
    for (const i of issuers) if (i.keys.remote && i.keys.size === 0) void i.keys.refresh();
    const missing = deny(401, 'token_missing', 'no bearer token in the request', { challenge: BEARER_CHALLENGE });
    const malformedAuth = deny(401, 'malformed_authorization', 'Authorization is not "Bearer <token>" or "DPoP <token>"', { challenge: `${BEARER_CHALLENGE}, error="invalid_request"` });

    function find(ctx: CheckContext): Found | 'malformed' | undefined {
      const h = ctx.request.headers;
      for (const f of options.from) {
        if ('header' in f) {
          const v = h[f.header];
          if (v === undefined || v === '') continue;
          if (f.header !== 'authorization') return { token: v.trim(), scheme: 'bearer', from: f };
          const sp = v.indexOf(' ');
          if (sp === -1 || v.includes(',')) return 'malformed';
          const scheme = v.slice(0, sp).toLowerCase();
          const token = v.slice(sp + 1).trim();
          if ((scheme !== 'bearer' && scheme !== 'dpop') || token === '' || token.includes(' ')) return 'malformed';
          return { token, scheme, from: f };
        }
        const c = h['cookie'];
        const v = c === undefined ? undefined : cookieValue(c, f.cookie);
        if (v) return { token: v, scheme: 'bearer', from: f };
      }
      return undefined;
    }

    function rejected(ctx: CheckContext, r: JwtResult & { ok: false }, scheme: string): StageResult {
      if (r.unavailable) return { kind: 'fail', reason: r.reason, detail: `jwt: ${r.detail}` };
      ctx.report('bad_token', 'ip', ctx.request.source.address);
      ctx.audit['token'] = { reason: r.reason };
      const challenge = scheme === 'dpop' ? `DPoP error="invalid_token"` : `${BEARER_CHALLENGE}, error="invalid_token"`;
      return deny(401, r.reason, `jwt: ${r.detail}`, { challenge });
    }

    function accepted(ctx: CheckContext, found: Found, r: JwtResult): StageResult {
      if (!r.ok) return rejected(ctx, r, found.scheme);
      const claims = r.token.claims;
      const cnf = claims['cnf'];
      const jkt = cnf !== null && typeof cnf === 'object' && typeof (cnf as Record<string, unknown>)['jkt'] === 'string' ? ((cnf as Record<string, unknown>)['jkt'] as string) : undefined;
      // RFC 9449 §7.1: a DPoP-bound token sent as a plain bearer token is refused (a thief would need no key).
      if (jkt !== undefined && found.scheme !== 'dpop') return rejected(ctx, { ok: false, reason: 'token_requires_dpop', detail: 'token is bound to a DPoP key (cnf.jkt) but was sent without the DPoP scheme' }, 'bearer');
      if (jkt === undefined && found.scheme === 'dpop') return rejected(ctx, { ok: false, reason: 'token_not_dpop_bound', detail: 'DPoP scheme used with a token that has no cnf.jkt' }, 'dpop');
      const id = identityFromClaims(claims, r.token.issuer.config.identity, 'jwt');
      if (id === undefined) return rejected(ctx, { ok: false, reason: 'missing_subject', detail: `claim ${r.token.issuer.config.identity.subject} is missing or not a string` }, found.scheme);
      ctx.identity = id;
      const fact: AccessTokenFact = { token: found.token, scheme: found.scheme, jkt, issuer: r.token.issuer.name, bindingVerified: false };
      ctx.set(ACCESS_TOKEN, fact);
      ctx.audit['token'] = { issuer: r.token.issuer.name, ...(jkt ? { jkt } : {}) };
      if (options.strip) {
        if ('header' in found.from) stripHeader(ctx, found.from.header);
        else {
          const name = found.from.cookie;
          const rest = (ctx.request.headers['cookie'] ?? '').split(';').filter((p) => p.split('=')[0]!.trim() !== name).join(';').trim();
          if (rest === '') stripHeader(ctx, 'cookie');
          else ctx.setUpstreamHeader('cookie', rest);
        }
      }
      return CONTINUE;
    }

    return {
      type: 'jwt',
      run(ctx) {
        const found = find(ctx);
        if (found === 'malformed') {
          ctx.report('bad_token', 'ip', ctx.request.source.address);
          return malformedAuth;
        }
        if (found === undefined) return options.whenMissing === 'deny' ? missing : CONTINUE;
        const r = verifyJwt(found.token, issuers, Date.now(), verified);
        if ((r as Promise<JwtResult>).then === undefined) return accepted(ctx, found, r as JwtResult);
        return (r as Promise<JwtResult>).then((v) => accepted(ctx, found, v));
      },
      finish(ctx, decision) {
        // A DPoP-bound token is only good with a verified proof: a route without a proof stage must not accept it.
        if (decision.kind !== 'allow') return;
        const fact = ctx.get(ACCESS_TOKEN);
        if (fact?.scheme === 'dpop' && !fact.bindingVerified) {
          return { kind: 'deny', denial: { status: 401, reason: 'proof_missing', detail: 'jwt: DPoP-bound token but no proof stage verified a DPoP proof on this route', challenge: 'DPoP error="invalid_token"' } };
        }
        return;
      },
    };
  },
};
