/**
 * proto/string-table.ts: a string comes back only for exactly the bytes it was decoded from, also when
 * every range lands in one slot and replaces the one before, and long ranges hashed on their ends only.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StringTable } from '../../ext-authz/src/proto/string-table.js';

describe('proto/string-table', () => {
  it('one slot, many byte strings: every decode equals Buffer#toString over the same range', () => {
    const table = new StringTable(1, 16);
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 20 }), { minLength: 1, maxLength: 8 }), fc.nat(3), (parts, pad) => {
        for (const p of [...parts, ...parts]) {
          const buf = Buffer.concat([Buffer.alloc(pad, 0x7a), Buffer.from(p), Buffer.alloc(pad, 0x7a)]);
          assert.equal(table.decode(buf, pad, pad + p.length), buf.toString('utf8', pad, pad + p.length));
        }
      }),
      { numRuns: 500 },
    );
  });

  it("long ranges that differ in one byte the hash does not sample are told apart by the bytes", () => {
    const table = new StringTable(2, 256);
    const base = Buffer.from('a'.repeat(32) + 'm'.repeat(100) + 'z'.repeat(32));
    for (let i = 32; i < 132; i += 7) {
      const b = Buffer.from(base);
      b[i] = 0x41;
      assert.equal(table.decode(base, 0, base.length), base.toString());
      assert.equal(table.decode(b, 0, b.length), b.toString());
    }
  });

  it('invalid UTF-8 decodes as Buffer#toString decodes it (U+FFFD), cached or not; empty and oversized ranges', () => {
    const table = new StringTable(8, 8);
    const bad = Buffer.from([0x61, 0xc3, 0x28, 0xff]);
    assert.equal(table.decode(bad, 0, 4), bad.toString());
    assert.equal(table.decode(bad, 0, 4), bad.toString());
    assert.equal(table.decode(bad, 2, 2), '');
    const big = Buffer.from('x'.repeat(9));
    assert.equal(table.decode(big, 0, 9), 'x'.repeat(9));
    assert.equal(table.boundBytes, 8 * 8 * 3);
    assert.throws(() => new StringTable(3, 8), /power of two/);
  });
});
