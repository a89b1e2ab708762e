// Byte helpers over raw (ptr, len) ranges, and the static out-parameter words the host
// writes pointer/length results into. Nothing here calls the host.

// Two words the host writes pointer/length results into; static, so no allocation per call.
export const OUT: usize = memory.data(16);

export function u32str(v: u32): string {
  if (v == 0) return "0";
  let s = "";
  while (v > 0) {
    s = String.fromCharCode(48 + (v % 10)) + s;
    v /= 10;
  }
  return s;
}

// Copies an ASCII string into a fresh heap block (caller frees). Non-ASCII becomes '?':
// every string we send (logs, details, bodies, header names) is ASCII by construction.
export function ascii(s: string): usize {
  const n = s.length;
  const p = heap.alloc(n > 0 ? <usize>n : 1);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    store<u8>(p + <usize>i, c < 128 ? <u8>c : 63);
  }
  return p;
}

// Case-sensitive compare of bytes with an ASCII literal.
export function eqLit(p: usize, n: usize, lit: string): bool {
  return n == <usize>lit.length && startsLit(p, n, lit);
}

export function startsLit(p: usize, n: usize, lit: string): bool {
  const m = <usize>lit.length;
  if (n < m) return false;
  for (let i: usize = 0; i < m; i++) {
    if (<i32>load<u8>(p + i) != lit.charCodeAt(<i32>i)) return false;
  }
  return true;
}

export function eqBytes(a: usize, an: usize, b: usize, bn: usize): bool {
  return an == bn && memory.compare(a, b, an) == 0;
}

export function bufPtr(b: ArrayBuffer): usize {
  return changetype<usize>(b);
}
export function bufLen(b: ArrayBuffer): usize {
  return <usize>b.byteLength;
}

export function copyBytes(p: usize, n: usize): ArrayBuffer {
  const b = new ArrayBuffer(<i32>n);
  memory.copy(changetype<usize>(b), p, n);
  return b;
}

// An ASCII literal as bytes (header names the filters compare and send).
export function lit(s: string): ArrayBuffer {
  const p = ascii(s);
  const b = copyBytes(p, <usize>s.length);
  heap.free(p);
  return b;
}

// ASCII-lowercases in place (header names from pluginConfig).
export function lowerInPlace(b: ArrayBuffer): void {
  const p = bufPtr(b);
  for (let i: usize = 0; i < bufLen(b); i++) {
    const c = load<u8>(p + i);
    if (c >= 65 && c <= 90) store<u8>(p + i, c + 32);
  }
}

export function isHex(c: u32): bool {
  return (c - 48 < 10) || (c - 97 < 6);
}
