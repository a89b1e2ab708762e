/**
 * Stage types that exist only in tests, to drive the pipeline's failure
 * paths (slow, throwing, failing) through the real service.
 */
import { z } from 'zod';
import { CONTINUE, fail } from '../../ext-authz/src/pipeline/decision.js';
import type { StageDefinition } from '../../ext-authz/src/stages/stage.js';
import { STATELESS, type Capability } from '../../ext-authz/src/capabilities/capability.js';
import { compose, type Composition } from '../../ext-authz/src/capabilities/index.js';
import { PENDING_CLAIMS } from '../../ext-authz/src/fds/facts.js';

/**
 * TEST-ONLY stage type: sets the identity an identity stage (mTLS, JWT...)
 * would have established, from `x-test-subject` (and `x-test-device`).
 * Put it before `passport` in a route; it never ships.
 */
export const TEST_IDENTITY = 'test-passport-identity';

const definitions: StageDefinition<any>[] = [];
function addTestStage<O extends { type: string }>(def: StageDefinition<O>): void {
  definitions.push(def as StageDefinition<any>);
}

{
  addTestStage({
    type: TEST_IDENTITY,
    schema: z.strictObject({ type: z.literal(TEST_IDENTITY) }),
    description: 'test: identity from x-test-subject / x-test-device',
    create: () => ({
      type: TEST_IDENTITY,
      run(ctx) {
        const subject = ctx.request.headers['x-test-subject'];
        if (subject !== undefined) {
          const device = ctx.request.headers['x-test-device'];
          ctx.identity = { subject, kind: 'user', source: 'mtls', attributes: {}, groups: [], ...(device ? { deviceId: device } : {}) };
        }
        return CONTINUE;
      },
    }),
  });
  const sleep = z.strictObject({ type: z.literal('test-sleep'), ms: z.number() });
  addTestStage({
    type: 'test-sleep',
    schema: sleep,
    description: 'test: wait, then continue',
    create: (o: z.infer<typeof sleep>) => ({
      type: 'test-sleep',
      run: () => new Promise((resolve) => setTimeout(() => resolve(CONTINUE), o.ms)),
    }),
  });
  const thrower = z.strictObject({ type: z.literal('test-throw'), async: z.boolean().default(false) });
  addTestStage({
    type: 'test-throw',
    schema: thrower,
    description: 'test: throw',
    create: (o: z.infer<typeof thrower>) => ({
      type: 'test-throw',
      run: () => {
        if (o.async) return Promise.reject(new Error('boom (async)'));
        throw new Error('boom');
      },
    }),
  });
  const failer = z.strictObject({ type: z.literal('test-fail') });
  addTestStage({
    type: 'test-fail',
    schema: failer,
    description: 'test: cannot decide',
    create: () => ({ type: 'test-fail', run: () => fail('dependency_unavailable', 'test dependency down') }),
  });
  const slowFinish = z.strictObject({ type: z.literal('test-slow-finish'), ms: z.number() });
  addTestStage({
    type: 'test-slow-finish',
    schema: slowFinish,
    description: 'test: a finish hook that takes its time',
    create: (o: z.infer<typeof slowFinish>) => ({
      type: 'test-slow-finish',
      run: () => CONTINUE,
      finish: () => new Promise<void>((resolve) => setTimeout(resolve, o.ms)),
    }),
  });
  // Leaves a single-use claim (as the proof stage does for a DPoP jti) for the fds stage to burn; `async` settles after a timer.
  const claim = z.strictObject({ type: z.literal('test-claim'), async: z.boolean().default(false) });
  addTestStage({
    type: 'test-claim',
    schema: claim,
    description: 'test: a single-use claim from x-test-jti, burned by the fds stage',
    create: (o: z.infer<typeof claim>) => ({
      type: 'test-claim',
      run(ctx) {
        const set = () => {
          const jti = ctx.request.headers['x-test-jti'];
          if (jti !== undefined) {
            ctx.set(PENDING_CLAIMS, { claims: [{ key: `test:${jti}`, expiresAt: Date.now() + 60_000, minTtlMs: 1_000 }], replayDenial: { status: 401, reason: 'test_replayed' }, replayOutcomes: [], sent: false });
          }
          return CONTINUE;
        };
        return o.async ? new Promise((resolve) => setTimeout(() => resolve(set()), 1)) : set();
      },
    }),
  });
  const setter = z.strictObject({ type: z.literal('test-set-header'), name: z.string(), value: z.string() });
  addTestStage({
    type: 'test-set-header',
    schema: setter,
    description: 'test: set an upstream header',
    create: (o: z.infer<typeof setter>) => ({
      type: 'test-set-header',
      run: (ctx) => {
        ctx.setUpstreamHeader(o.name, o.value);
        ctx.addResponseHeader('x-test-response', 'yes');
        return CONTINUE;
      },
    }),
  });
}

/** The stage types above as one capability, passed to the service the way an embedder passes its own. */
export const testCapability: Capability<undefined> = { name: 'test', stages: definitions, prepare: () => STATELESS };

let composition: Composition | undefined;
/** The built-in capabilities plus the test one: parse test configs with it. */
export function testComposition(): Composition {
  composition ??= compose([testCapability]);
  return composition;
}
