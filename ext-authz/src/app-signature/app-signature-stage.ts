/**
 * The `app-signature` stage (hot path): an app request signed per RFC 9421
 * with the device key its device credential carries.
 *
 * Order, cheapest first: the credential (cached after its first
 * verification: no crypto), then the FDS blocked cache for the device and
 * its user (a disabled device is a 403 before any signature work), then the
 * signature parameters, components and body digest, then one signature
 * verification on the cached KeyObject. The nonce is a single-use claim left
 * for the fds stage, which must run earlier on the route: its finish burns
 * it in the Check's one EVALSHA, only when every other stage allowed.
 *
 * Every refusal is an FDS event for the IP and, once the credential's own
 * signature verified, for the device and its user (an unverified credential
 * names nobody: a forger must not be able to count against a victim device).
 */
import { z } from 'zod';
import { digestText } from '../pipeline/text.js';
import { CONTINUE, deny, type Denial, type StageResult } from '../pipeline/decision.js';
import type { CheckContext, Identity, Outcome } from '../pipeline/context.js';
import { VERIFIED_DEVICE } from '../pipeline/facts.js';
import type { Stage, StageDefinition } from '../stages/stage.js';
import type { PassgateConfig } from '../config/schema.js';
import { headerNameSchema } from '../config/common.js';
import { duration } from '../fds/config.js';
import { BLOCKED_DENIAL } from '../fds/blocked.js';
import { PENDING_CLAIMS, type PendingClaims } from '../fds/facts.js';
import { SIGNATURE_ALGORITHMS, type Failure } from './message-signature.js';
import type { VerifiedCredential } from './credential.js';
import { bodyFacts, verifyAppRequest, type VerifyPolicy } from './verify.js';
import type { AppSignatureState } from './state.js';

const schema = z.strictObject({
  type: z.literal('app-signature'),
  /** The Signature-Input / Signature member verified (other labels are ignored). */
  label: z.string().regex(/^[a-z*][a-z0-9_.*-]{0,63}$/, 'must be a structured-field key (lowercase)').default('app'),
  /** Header carrying the device credential (covered by the signature). */
  credentialHeader: headerNameSchema.default('device-credential'),
  /** Accepted algorithms (pinned; the device key decides which one applies, a declared alg must agree). */
  algorithms: z.array(z.enum(SIGNATURE_ALGORITHMS)).min(1).default([...SIGNATURE_ALGORITHMS]),
  /** How long a signature is good for after `created` (and the most `expires - created` may span). */
  maxAge: duration(1_000, 600_000).default(60_000),
  clockSkew: duration(0, 60_000).default(5_000),
  maxHeaderBytes: z.number().int().min(256).max(16 * 1024).default(4096),
  /** Remove the credential and signature headers before the upstream (they are Passgate's business). */
  strip: z.boolean().default(true),
});
type Options = z.infer<typeof schema>;

const hashNonce = (nonce: string) => digestText(nonce, 'base64url').slice(0, 22);

/** Routes where an app-signature stage has no fds stage before it (the nonce must ride in the fds stage's one call). */
function routesWithoutFds(config: PassgateConfig): string[] {
  const out: string[] = [];
  for (const [gw, g] of Object.entries(config.gateways)) {
    const routes = [...g.routes.map((r, i) => ({ where: `gateways.${gw}.routes[${i}]`, stages: r.stages })), ...(g.defaultRoute ? [{ where: `gateways.${gw}.defaultRoute`, stages: g.defaultRoute.stages }] : [])];
    for (const r of routes) {
      const i = r.stages.findIndex((s) => s.type === 'app-signature');
      if (i !== -1 && !r.stages.slice(0, i).some((s) => s.type === 'fds')) out.push(r.where);
    }
  }
  return out;
}

const BLOCKED: StageResult = Object.freeze({ kind: 'deny', denial: BLOCKED_DENIAL });

export const appSignatureStage: StageDefinition<Options, AppSignatureState> = {
  type: 'app-signature',
  schema,
  events: [
    { event: 'app_credential_invalid', kinds: ['ip', 'device', 'user'] },
    { event: 'app_signature_invalid', kinds: ['ip', 'device', 'user'] },
    { event: 'app_signature_replay', kinds: ['ip', 'device', 'user'] },
  ],
  description: 'Verify an RFC 9421 HTTP message signature made with the device key of a Passgate device credential; burn its nonce once in the fds stage\'s round trip.',
  validate(_options, config) {
    return routesWithoutFds(config).map((where) => `${where}: an app-signature stage needs an fds stage before it on the route (its nonce is burned in the fds round trip)`);
  },
  create(options, factory): Stage {
    const { authority } = factory.state;
    const engine = factory.state.fds.engine;
    if (engine === undefined) throw new Error(`${factory.path}: app-signature needs the FDS store (add an fds stage before it, or an fds section)`);
    const policy: VerifyPolicy = {
      label: options.label,
      algorithms: new Set(options.algorithms),
      maxAgeSec: options.maxAge / 1000,
      skewSec: options.clockSkew / 1000,
      maxHeaderBytes: options.maxHeaderBytes,
      credentialHeader: options.credentialHeader,
    };
    const header = options.credentialHeader;
    const challenge = `Signature label="${options.label}"`;
    const replayDenial: Denial = Object.freeze({ status: 401, reason: 'signature_replayed', detail: 'app-signature: this nonce was used before', challenge });

    /** Counted for the IP and, with a verified credential, for its device and user (literal events: see test/core/events-declared). */
    function report(ctx: CheckContext, credentialProblem: boolean, c: VerifiedCredential | undefined): void {
      const ip = ctx.request.source.address;
      if (credentialProblem) {
        ctx.report('app_credential_invalid', 'ip', ip);
        if (c !== undefined) ctx.report('app_credential_invalid', 'device', c.deviceId);
        if (c?.user !== undefined) ctx.report('app_credential_invalid', 'user', c.user);
      } else {
        ctx.report('app_signature_invalid', 'ip', ip);
        if (c !== undefined) ctx.report('app_signature_invalid', 'device', c.deviceId);
        if (c?.user !== undefined) ctx.report('app_signature_invalid', 'user', c.user);
      }
    }

    function refuse(ctx: CheckContext, credentialProblem: boolean, f: Failure, c: VerifiedCredential | undefined): StageResult {
      report(ctx, credentialProblem, c);
      ctx.audit['app_signature'] = { reason: f.reason, ...(c ? { device: c.deviceId } : {}) };
      return deny(401, f.reason, `app-signature: ${f.detail}`, { challenge });
    }

    /** The device (and its user) as the identity FDS and later stages see; an existing identity must be the device's user. */
    function identify(ctx: CheckContext, c: VerifiedCredential): Failure | undefined {
      const id = ctx.identity;
      if (id === undefined) {
        const next: Identity = c.user !== undefined
          ? { subject: c.user, kind: 'user', source: 'app-signature', attributes: {}, groups: [], deviceId: c.deviceId }
          : { subject: '', kind: 'anonymous', source: 'app-signature', attributes: {}, groups: [], deviceId: c.deviceId };
        ctx.identity = next;
        return undefined;
      }
      if (c.user !== undefined && id.kind !== 'anonymous' && id.subject !== c.user) return { ok: false, reason: 'device_user_mismatch', detail: 'the device is registered to another user than the token\'s subject' };
      ctx.identity = { ...id, deviceId: c.deviceId };
      return undefined;
    }

    return {
      type: 'app-signature',
      run(ctx): StageResult {
        const h = ctx.request.headers;
        const now = Date.now();
        const cred = authority.verify(h[header], now, policy.skewSec);
        if (!cred.ok) {
          if (cred.expired) identify(ctx, cred.expired);
          return refuse(ctx, true, cred, cred.expired);
        }
        const c = cred.credential;
        // Disabled device (or user): refused here, before any signature work, from the FDS blocked cache.
        const blocked = engine.cached('device', c.deviceId) ?? (c.user !== undefined ? engine.cached('user', c.user) : undefined);
        if (blocked !== undefined) {
          ctx.audit['fds'] = { blocked: { kind: blocked.kind, subject: blocked.subject, reason: blocked.reason, createdBy: blocked.createdBy, expiresAt: blocked.expiresAt }, cached: true };
          return BLOCKED;
        }
        const mismatch = identify(ctx, c);
        if (mismatch) return refuse(ctx, false, mismatch, c);
        const v = ctx.request;
        const r = verifyAppRequest(
          { method: v.method, scheme: v.scheme, authority: h[':authority'] ?? h['host'] ?? v.host, target: h[':path'] ?? (v.query ? `${v.path}?${v.query}` : v.path), headers: h, body: v.body, ...bodyFacts(h) },
          c,
          policy,
          now,
        );
        if (!r.ok) return refuse(ctx, false, r, c);
        const outcomes: Outcome[] = [
          { event: 'app_signature_replay', subjectKind: 'ip', subject: v.source.address },
          { event: 'app_signature_replay', subjectKind: 'device', subject: c.deviceId },
        ];
        if (c.user !== undefined) outcomes.push({ event: 'app_signature_replay', subjectKind: 'user', subject: c.user });
        // One nonce is good once per gateway and device, whatever the URL; kept until the signature is refused anyway.
        const pending: PendingClaims = {
          claims: [{ key: `app:${ctx.gateway.name}:${c.deviceId}:${hashNonce(r.nonce)}`, expiresAt: (r.expiresAtSec + policy.skewSec) * 1000, minTtlMs: options.clockSkew + 1000 }],
          replayDenial,
          replayOutcomes: outcomes,
          sent: false,
        };
        ctx.set(PENDING_CLAIMS, pending);
        ctx.set(VERIFIED_DEVICE, { id: c.deviceId, platform: c.platform, attestation: c.attestation });
        ctx.audit['app_signature'] = { device: c.deviceId, platform: c.platform, attestation: c.attestation, alg: c.alg };
        if (options.strip) (ctx.removeUpstream ??= []).push(header, 'signature', 'signature-input');
        return CONTINUE;
      },
    };
  },
};
