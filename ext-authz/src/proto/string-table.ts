/**
 * Decodes UTF-8 byte ranges to strings and hands back the same string object when the same bytes come
 * again. A CheckRequest repeats most of its strings call after call (header names, `:method`, the host,
 * user agents, a client's XFCC header), and each fresh copy costs a native call, an allocation the GC
 * then collects, and, for strings used as Map keys later (the mtls header memo), a fresh hash.
 *
 * Direct-mapped: slot = hash of a sample of the bytes, a new string simply replaces the slot's old one,
 * so there is no bookkeeping per hit. A hit is decided on the bytes themselves (length, then every byte),
 * never on the hash alone, so a string is returned only for exactly the bytes it was decoded from. Bounded by
 * bytes: `slots × maxBytes` of copied bytes and the strings made from them; longer ranges are decoded
 * without the table.
 */
const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
/**
 * Bytes up to this length are compared and copied in JS; longer ones with one native call. On these machines a
 * native Buffer call costs about as much as decoding a 100-byte string, a JS byte compare ~2 ns a byte.
 */
const JS_COMPARE_MAX = 64;

export class StringTable {
  private readonly strings: Array<string | undefined>;
  private readonly lengths: Int32Array;
  /** Slot i's bytes start at i × maxBytes. */
  private readonly arena: Buffer;
  private readonly mask: number;

  constructor(
    slots: number,
    private readonly maxBytes: number,
  ) {
    if (!Number.isInteger(Math.log2(slots)) || slots < 1) throw new Error(`StringTable: slots must be a power of two, got ${slots}`);
    this.mask = slots - 1;
    this.strings = new Array<string | undefined>(slots).fill(undefined);
    this.lengths = new Int32Array(slots);
    this.arena = Buffer.alloc(slots * maxBytes);
  }

  /** Most bytes this table holds: copied bytes plus the strings (two bytes per UTF-16 unit at worst). */
  get boundBytes(): number {
    return this.arena.length * 3;
  }

  /** `buf.toString('utf8', start, end)`, the same object as the last time these bytes were decoded here. */
  decode(buf: Buffer, start: number, end: number): string {
    const n = end - start;
    if (n <= 0) return '';
    const max = this.maxBytes;
    if (n > max) return buf.toString('utf8', start, end);
    // The hash reads at most 16 bytes spread over the range (the ends, where header names and values
    // differ most, and evenly between): it only picks the slot, the compare below decides.
    let h = FNV_OFFSET ^ n;
    const step = n <= 16 ? 1 : (n >>> 4) + 1;
    for (let i = start; i < end; i += step) h = Math.imul(h ^ buf[i]!, FNV_PRIME);
    h = Math.imul(h ^ buf[end - 1]!, FNV_PRIME);
    const slot = (h ^ (h >>> 16)) & this.mask;
    const at = slot * max;
    const arena = this.arena;
    const cached = this.strings[slot];
    if (cached !== undefined && this.lengths[slot] === n) {
      if (n <= JS_COMPARE_MAX) {
        let i = 0;
        while (i < n && arena[at + i] === buf[start + i]) i++;
        if (i === n) return cached;
      } else if (buf.compare(arena, at, at + n, start, end) === 0) {
        return cached;
      }
    }
    const s = buf.toString('utf8', start, end);
    if (n <= JS_COMPARE_MAX) for (let i = 0; i < n; i++) arena[at + i] = buf[start + i]!;
    else buf.copy(arena, at, start, end);
    this.lengths[slot] = n;
    this.strings[slot] = s;
    return s;
  }
}
