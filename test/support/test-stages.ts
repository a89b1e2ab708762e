/**
 * Stage types that exist only in tests, to drive the pipeline's failure
 * paths (slow, throwing, failing) through the real service.
 */
import { z } from 'zod';
import { registerStageDefinition, stageDefinition } from '../../ext-authz/src/stages/catalog.js';
import { CONTINUE, fail } from '../../ext-authz/src/pipeline/decision.js';

export function registerTestStages(): void {
  if (stageDefinition('test-sleep')) return;
  const sleep = z.strictObject({ type: z.literal('test-sleep'), ms: z.number() });
  registerStageDefinition({
    type: 'test-sleep',
    schema: sleep,
    description: 'test: wait, then continue',
    create: (o: z.infer<typeof sleep>) => ({
      type: 'test-sleep',
      run: () => new Promise((resolve) => setTimeout(() => resolve(CONTINUE), o.ms)),
    }),
  });
  const thrower = z.strictObject({ type: z.literal('test-throw'), async: z.boolean().default(false) });
  registerStageDefinition({
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
  registerStageDefinition({
    type: 'test-fail',
    schema: failer,
    description: 'test: cannot decide',
    create: () => ({ type: 'test-fail', run: () => fail('dependency_unavailable', 'test dependency down') }),
  });
  const slowFinish = z.strictObject({ type: z.literal('test-slow-finish'), ms: z.number() });
  registerStageDefinition({
    type: 'test-slow-finish',
    schema: slowFinish,
    description: 'test: a finish hook that takes its time',
    create: (o: z.infer<typeof slowFinish>) => ({
      type: 'test-slow-finish',
      run: () => CONTINUE,
      finish: () => new Promise<void>((resolve) => setTimeout(resolve, o.ms)),
    }),
  });
  const setter = z.strictObject({ type: z.literal('test-set-header'), name: z.string(), value: z.string() });
  registerStageDefinition({
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
