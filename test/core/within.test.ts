/**
 * resilience/within.ts: a promise's value or rejection when it settles in time, TIMED_OUT when not, a late
 * rejection kept handled, and no timer left behind either way.
 */
import assert from 'node:assert/strict';
import { within, TIMED_OUT } from '../../ext-authz/src/resilience/within.js';

/** Runs `fn` with setTimeout/clearTimeout watched: the timers created meanwhile that were never cleared. */
async function unclearedTimers(fn: () => Promise<unknown>): Promise<number> {
  const made = new Set<unknown>();
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    const t = realSet(...args);
    made.add(t);
    return t;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((t: Parameters<typeof clearTimeout>[0]) => {
    made.delete(t);
    realClear(t);
  }) as typeof clearTimeout;
  try {
    await fn();
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
  return made.size;
}
const later = <T>(ms: number, v: T, fail = false) => new Promise<T>((res, rej) => setTimeout(() => (fail ? rej(new Error(String(v))) : res(v)), ms));

describe('resilience/within', () => {
  it('settles with the promise when it is in time, and clears its timer', async () => {
    const v = later(5, 'v');
    const boom = later(30, 'boom', true); // rejects after within() below holds it
    const left = await unclearedTimers(async () => {
      assert.equal(await within(v, 1_000), 'v');
      await assert.rejects(within(boom, 1_000), /boom/);
    });
    assert.equal(left, 0, 'a timer was left running');
  });

  it('TIMED_OUT when time runs out first; the late rejection is handled (no unhandledRejection)', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (r: unknown) => unhandled.push(r);
    process.on('unhandledRejection', onUnhandled);
    try {
      assert.equal(await within(later(50, 'late', true), 5), TIMED_OUT);
      assert.equal(await within(later(50, 'late'), 5), TIMED_OUT);
      assert.equal(await within(later(20, 'x', true), 0), TIMED_OUT, 'no time at all');
      await new Promise((r) => setTimeout(r, 80));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a wait past setTimeout\'s 2^31-1 ms limit is not cut to 1 ms', async () => {
    assert.equal(await within(later(20, 'v'), 40 * 24 * 3600 * 1000), 'v');
  });
});
