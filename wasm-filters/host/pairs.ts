// proxy-wasm pairs encoding (u32 LE): count, count x (keyLen, valueLen), then each key and
// value followed by a NUL. Strings are byte strings: one char per byte (latin1), as Node's
// HTTP parser gives header values.
import { MAX_PAIRS, MAX_PAIRS_BYTES } from "./abi.js";

export type HeaderList = Array<[string, string]>;

export function pairsSize(pairs: HeaderList): number {
  let n = 4;
  for (const [k, v] of pairs) n += 10 + k.length + v.length;
  return n;
}

/** Writes the encoding of `pairs` into `out` at `offset` (out must hold pairsSize bytes). */
export function writePairs(pairs: HeaderList, out: Uint8Array, offset = 0): number {
  // Byte loops: header strings are short, and Buffer.write's per-call overhead dominated.
  // This runs for every get_header_map_pairs, so no closure is made per call.
  writeU32(out, offset, pairs.length);
  let h = offset + 4;
  let d = h + 8 * pairs.length;
  for (const [k, v] of pairs) {
    writeU32(out, h, k.length);
    writeU32(out, h + 4, v.length);
    h += 8;
    d = writeLatin1(k, out, d);
    out[d++] = 0;
    d = writeLatin1(v, out, d);
    out[d++] = 0;
  }
  return d - offset;
}

function writeU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v & 0xff; out[at + 1] = (v >>> 8) & 0xff; out[at + 2] = (v >>> 16) & 0xff; out[at + 3] = v >>> 24;
}

/** One byte per char (the low byte, as latin1); returns the end offset. */
export function writeLatin1(s: string, out: Uint8Array, at: number): number {
  const n = s.length;
  for (let i = 0; i < n; i++) out[at + i] = s.charCodeAt(i);
  return at + n;
}

export function encodePairs(pairs: HeaderList): Buffer {
  const b = Buffer.alloc(pairsSize(pairs));
  writePairs(pairs, b);
  return b;
}

/**
 * Decodes a pairs buffer. Like Envoy, a malformed buffer or one over 1024 pairs / 1 MiB
 * decodes to no pairs at all (null here, so callers can tell).
 */
export function decodePairs(buf: Uint8Array): HeaderList | null {
  if (buf.length === 0) return [];
  if (buf.length < 4 || buf.length > MAX_PAIRS_BYTES) return null;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = b.readUInt32LE(0);
  if (n > MAX_PAIRS || 4 + 8 * n > b.length) return null;
  const out: HeaderList = [];
  let d = 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    const kl = b.readUInt32LE(4 + 8 * i);
    const vl = b.readUInt32LE(8 + 8 * i);
    if (d + kl + vl + 2 > b.length) return null;
    const k = b.toString("latin1", d, d + kl);
    d += kl + 1;
    const v = b.toString("latin1", d, d + vl);
    d += vl + 1;
    out.push([k, v]);
  }
  return out;
}
