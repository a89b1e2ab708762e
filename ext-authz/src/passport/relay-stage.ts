/**
 * The `relay` stage: fetches common facts once at the gateway (per user,
 * cached) and hands them upstream as internal headers
 * (`x-passgate-relay-<name>`), as Passport claims (a later `passport` stage
 * on the same route signs them in), or both. A provider that fails is either
 * omitted and listed as missing, or denies the request, as configured.
 */
import { z } from 'zod';
import { CONTINUE, deny, type StageResult } from '../pipeline/decision.js';
import type { CheckContext } from '../pipeline/context.js';
import type { StageDefinition } from '../stages/stage.js';
import type { LookupResult } from './sources/cached-http.js';
import type { RelayProvider, RelayValue } from './relay-provider.js';
import { requirePassportState, type PassportState } from './runtime.js';
import { RELAY, type RelayAttribute } from './facts.js';

/** Lists the providers that failed and were omitted, for upstreams that care. */
export const RELAY_MISSING_HEADER = 'x-passgate-relay-missing';

const schema = z.strictObject({
  type: z.literal('relay'),
  /** Names from passport.relay.providers. */
  providers: z.array(z.string().min(1)).min(1),
  /** `omit`: go on without it (listed in x-passgate-relay-missing / relayMissing); `deny`: answer 503 relay_unavailable. */
  onFailure: z.enum(['omit', 'deny']).default('omit'),
  /** `header` (x-passgate-relay-<name>), `claim` (Passport `relay` claim; put a passport stage after this one) or `both`. */
  into: z.enum(['header', 'claim', 'both']).default('header'),
});
type Options = z.infer<typeof schema>;

const NO_IDENTITY: LookupResult<RelayValue> = Object.freeze({ kind: 'error', reason: 'no_identity', detail: 'no identity (or device) to ask about' });

class RelayStage {
  readonly type = 'relay';
  private readonly toHeader: boolean;
  private readonly toClaim: boolean;

  constructor(
    private readonly options: Options,
    private readonly providers: readonly RelayProvider[],
  ) {
    this.toHeader = options.into !== 'claim';
    this.toClaim = options.into !== 'header';
  }

  run(ctx: CheckContext): StageResult | Promise<StageResult> {
    const id = ctx.identity;
    const remaining = ctx.remainingMs();
    const results: Array<LookupResult<RelayValue> | Promise<LookupResult<RelayValue>>> = [];
    let async = false;
    for (const p of this.providers) {
      const r = p.canServe(id) ? p.get(id, remaining) : NO_IDENTITY;
      if (r instanceof Promise) async = true;
      results.push(r);
    }
    if (async) return Promise.all(results).then((all) => this.apply(ctx, all));
    return this.apply(ctx, results as Array<LookupResult<RelayValue>>);
  }

  private apply(ctx: CheckContext, results: ReadonlyArray<LookupResult<RelayValue>>): StageResult {
    let missing: string[] | undefined;
    let attr: RelayAttribute | undefined;
    if (this.toClaim) {
      attr = ctx.get(RELAY);
      if (attr === undefined) ctx.set(RELAY, (attr = { claims: {}, missing: [], key: '' }));
    }
    for (let i = 0; i < results.length; i++) {
      const provider = this.providers[i]!;
      const r = results[i]!;
      if (r.kind === 'found') {
        if (this.toHeader) ctx.setUpstreamHeader(provider.header, String(r.value));
        if (attr) attr.claims[provider.name] = r.value;
        continue;
      }
      const detail = r.kind === 'error' ? r.detail : `relay provider "${provider.name}": no answer`;
      if (this.options.onFailure === 'deny') return deny(503, 'relay_unavailable', detail);
      (missing ??= []).push(provider.name);
      ctx.audit[`relay_${provider.name}`] = r.kind === 'error' ? r.reason : 'missing';
    }
    if (missing !== undefined) {
      if (this.toHeader) ctx.setUpstreamHeader(RELAY_MISSING_HEADER, missing.join(','));
      if (attr) attr.missing.push(...missing);
    }
    if (attr) attr.key = `${JSON.stringify(attr.claims)}|${attr.missing.join(',')}`;
    return CONTINUE;
  }
}

export const relayStage: StageDefinition<Options, PassportState | undefined> = {
  type: 'relay',
  schema,
  description: 'Fetch per-user facts from HTTP providers (cached) and inject them as x-passgate-relay-<name> headers or Passport claims.',
  create(options, f) {
    const state = requirePassportState(f, 'relay');
    const providers = options.providers.map((n, i) => {
      const p = state.relays.get(n);
      if (!p) throw new Error(`${f.path}.providers[${i}]: no relay provider "${n}"`);
      return p;
    });
    return new RelayStage(options, providers);
  },
  validate(options, config) {
    const providers = config.passport?.relay.providers;
    if (providers === undefined) return ['the relay stage needs passport.relay.providers (and the passport section)'];
    const problems: string[] = [];
    options.providers.forEach((n, i) => {
      if (!Object.hasOwn(providers, n)) {
        const known = Object.keys(providers);
        problems.push(`providers[${i}]: no relay provider "${n}" in passport.relay.providers${known.length ? ` (known: ${known.join(', ')})` : ''}`);
      }
    });
    const prefixes = config.headers.internalPrefixes;
    if (options.into !== 'claim' && !prefixes.some((p) => 'x-passgate-relay-'.startsWith(p))) {
      problems.push('relay headers (x-passgate-relay-<name>) must fall under headers.internalPrefixes (e.g. "x-passgate-"), or clients could forge them');
    }
    return problems;
  },
};
