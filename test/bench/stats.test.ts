import assert from 'node:assert/strict';
import { percentile, summarize, SampleBuffer } from '../../bench/common/stats.js';

describe('benchmark statistics', () => {
  it('percentile is nearest-rank', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
    assert.equal(percentile(sorted, 0.5), 50);
    assert.equal(percentile(sorted, 0.9), 90);
    assert.equal(percentile(sorted, 0.99), 99);
    assert.equal(percentile(sorted, 0.999), 100);
    assert.equal(percentile(Float64Array.of(7), 0.99), 7);
    assert.ok(Number.isNaN(percentile(new Float64Array(0), 0.5)));
  });

  it('summarize sorts numerically, counts only the first `count` samples and leaves the input alone', () => {
    const samples = Float64Array.of(10, 2, 30, 4, 1000);
    const s = summarize(samples, 4);
    assert.equal(s.count, 4);
    assert.equal(s.max, 30);
    assert.equal(s.p50, 4);
    assert.equal(s.mean, (10 + 2 + 30 + 4) / 4);
    assert.deepEqual([...samples], [10, 2, 30, 4, 1000]);
  });

  it('SampleBuffer grows past its initial capacity without losing samples', () => {
    const b = new SampleBuffer(2);
    for (const v of [5, 1, 4, 2, 3]) b.push(v);
    const s = b.summary();
    assert.equal(s.count, 5);
    assert.equal(s.max, 5);
    assert.equal(s.p50, 3);
  });
});
