// Header pairs (de)serialisation: the proxy-wasm pairs encoding, read in place from one
// host-allocated block and written into one heap block.
import { proxy_get_header_map_pairs } from "./imports";
import { Status } from "./enums";
import { OUT } from "./bytes";

// Decoded view over a pairs buffer the host allocated with our malloc:
// u32 count, count x (u32 keyLen, u32 valueLen), then key\0 value\0 ...
export class Pairs {
  base: usize = 0; // heap block to free (0 when the host returned nothing)
  count: i32 = 0;
  // Parallel offsets: key ptr/len and value ptr/len for header i.
  kp: StaticArray<usize> = new StaticArray<usize>(0);
  kl: StaticArray<usize> = new StaticArray<usize>(0);
  vp: StaticArray<usize> = new StaticArray<usize>(0);
  vl: StaticArray<usize> = new StaticArray<usize>(0);
  bytes: usize = 0; // sum of key and value lengths (what Envoy's byteSize counts)

  free(): void {
    if (this.base != 0) heap.free(this.base);
    this.base = 0;
  }
}

// One host call for the whole map. Returns null when the map is unavailable.
export function getPairs(map: i32): Pairs | null {
  if (proxy_get_header_map_pairs(map, OUT, OUT + 4) != Status.Ok) return null;
  const base = load<usize>(OUT);
  const size = load<usize>(OUT + 4);
  const r = new Pairs();
  if (base == 0 || size < 4) return r;
  r.base = base;
  const n = load<u32>(base);
  // Reject a count that cannot fit (defends against a misbehaving host).
  if (<u64>n * 10 + 4 > <u64>size) { r.free(); return r; }
  const count = <i32>n;
  r.count = count;
  r.kp = new StaticArray<usize>(count);
  r.kl = new StaticArray<usize>(count);
  r.vp = new StaticArray<usize>(count);
  r.vl = new StaticArray<usize>(count);
  let d = base + 4 + 8 * <usize>count;
  const end = base + size;
  let bytes: usize = 0;
  for (let i = 0; i < count; i++) {
    const kl = <usize>load<u32>(base + 4 + 8 * <usize>i);
    const vl = <usize>load<u32>(base + 8 + 8 * <usize>i);
    if (d + kl + vl + 2 > end) { r.count = i; break; }
    unchecked(r.kp[i] = d);
    unchecked(r.kl[i] = kl);
    d += kl + 1;
    unchecked(r.vp[i] = d);
    unchecked(r.vl[i] = vl);
    d += vl + 1;
    bytes += kl + vl;
  }
  r.bytes = bytes;
  return r;
}

// Builds a pairs buffer (caller frees with heap.free) from parallel ranges, skipping
// entries whose keep flag is 0.
export function encodePairs(
  count: i32, kp: StaticArray<usize>, kl: StaticArray<usize>, vp: StaticArray<usize>,
  vl: StaticArray<usize>, keep: StaticArray<u8>, outLen: usize,
): usize {
  let n = 0;
  let size: usize = 4;
  for (let i = 0; i < count; i++) {
    if (unchecked(keep[i]) == 0) continue;
    n++;
    size += 10 + unchecked(kl[i]) + unchecked(vl[i]);
  }
  const p = heap.alloc(size);
  store<u32>(p, <u32>n);
  let h = p + 4;
  let d = p + 4 + 8 * <usize>n;
  for (let i = 0; i < count; i++) {
    if (unchecked(keep[i]) == 0) continue;
    const k = unchecked(kl[i]);
    const v = unchecked(vl[i]);
    store<u32>(h, <u32>k);
    store<u32>(h + 4, <u32>v);
    h += 8;
    memory.copy(d, unchecked(kp[i]), k);
    d += k;
    store<u8>(d++, 0);
    memory.copy(d, unchecked(vp[i]), v);
    d += v;
    store<u8>(d++, 0);
  }
  store<usize>(outLen, size);
  return p;
}
