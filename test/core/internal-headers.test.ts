import assert from 'node:assert/strict';
import { InternalHeaderPolicy } from '../../ext-authz/src/check/internal-headers.js';

describe('internal header policy', () => {
  const policy = new InternalHeaderPolicy(['x-passport', 'x-relay-terms'], ['x-passgate-']);

  it('always lists every internal name, even when the request does not carry it', () => {
    assert.deepEqual([...policy.headersToRemove({}, [], undefined)].sort(), ['x-passport', 'x-relay-terms']);
  });
  it('adds request headers that carry an internal prefix', () => {
    const out = policy.headersToRemove({ 'x-passgate-user': 'admin', 'x-other': '1' }, [], undefined);
    assert.ok(out.includes('x-passgate-user'));
    assert.ok(!out.includes('x-other'));
  });
  it('never lists a header this answer sets (Envoy removes after it sets)', () => {
    const out = policy.headersToRemove({ 'x-passport': 'forged', 'x-passgate-degraded': 'x' }, [['x-passport', 'real'], ['x-passgate-degraded', 'true']], undefined);
    assert.ok(!out.includes('x-passport'));
    assert.ok(!out.includes('x-passgate-degraded'));
    assert.ok(out.includes('x-relay-terms'));
  });
  it('adds an extra header (XFCC on a non-mTLS gateway)', () => {
    assert.ok(policy.headersToRemove({}, [], 'x-forwarded-client-cert').includes('x-forwarded-client-cert'));
  });
  it('knows what is internal', () => {
    assert.ok(policy.isInternal('x-passport'));
    assert.ok(policy.isInternal('x-passgate-anything'));
    assert.ok(!policy.isInternal('x-pass'));
  });
});
