// A minimal JSON reader over raw bytes: enough for pluginConfig objects.
import { startsLit, copyBytes } from "./bytes";

// Minimal JSON tree: enough for pluginConfig objects (strings, numbers, bools, arrays).
export const J_NULL: u8 = 0;
export const J_BOOL: u8 = 1;
export const J_NUM: u8 = 2;
export const J_STR: u8 = 3;
export const J_ARR: u8 = 4;
export const J_OBJ: u8 = 5;

export class JValue {
  kind: u8 = J_NULL;
  b: bool = false;
  num: f64 = 0;
  str: ArrayBuffer | null = null; // UTF-8 bytes, escapes decoded
  items: Array<JValue> | null = null; // array items or object values
  keys: Array<ArrayBuffer> | null = null; // object keys
}

export class JsonParser {
  p: usize;
  end: usize;
  ok: bool = true;
  depth: i32 = 0;

  constructor(p: usize, n: usize) {
    this.p = p;
    this.end = p + n;
  }

  // Parses a whole document; null on any syntax error or trailing garbage.
  parse(): JValue | null {
    const v = this.value();
    this.ws();
    if (!this.ok || this.p != this.end) return null;
    return v;
  }

  ws(): void {
    while (this.p < this.end) {
      const c = load<u8>(this.p);
      if (c == 32 || c == 9 || c == 10 || c == 13) this.p++;
      else break;
    }
  }

  peek(): i32 {
    return this.p < this.end ? <i32>load<u8>(this.p) : -1;
  }

  lit(s: string): bool {
    if (!startsLit(this.p, this.end - this.p, s)) { this.ok = false; return false; }
    this.p += <usize>s.length;
    return true;
  }

  value(): JValue {
    const v = new JValue();
    this.ws();
    if (++this.depth > 32) { this.ok = false; return v; }
    const c = this.peek();
    if (c == 123) { // {
      v.kind = J_OBJ;
      const keys = new Array<ArrayBuffer>();
      const items = new Array<JValue>();
      this.p++;
      this.ws();
      if (this.peek() == 125) this.p++;
      else {
        while (this.ok) {
          this.ws();
          if (this.peek() != 34) { this.ok = false; break; }
          keys.push(this.string());
          this.ws();
          if (this.peek() != 58) { this.ok = false; break; }
          this.p++;
          items.push(this.value());
          if (this.listEnd(125)) break;
        }
      }
      v.keys = keys;
      v.items = items;
    } else if (c == 91) { // [
      v.kind = J_ARR;
      const items = new Array<JValue>();
      this.p++;
      this.ws();
      if (this.peek() == 93) this.p++;
      else {
        while (this.ok) {
          items.push(this.value());
          if (this.listEnd(93)) break;
        }
      }
      v.items = items;
    } else if (c == 34) {
      v.kind = J_STR;
      v.str = this.string();
    } else if (c == 116) {
      v.kind = J_BOOL; v.b = true; this.lit("true");
    } else if (c == 102) {
      v.kind = J_BOOL; this.lit("false");
    } else if (c == 110) {
      this.lit("null");
    } else if (c == 45 || (c >= 48 && c <= 57)) {
      v.kind = J_NUM;
      v.num = this.number();
    } else {
      this.ok = false;
    }
    this.depth--;
    return v;
  }

  // After an object member or array item: true at the closing bracket; a comma continues;
  // anything else is a syntax error.
  listEnd(close: i32): bool {
    this.ws();
    const d = this.peek();
    this.p++;
    if (d == close) return true;
    if (d != 44) this.ok = false;
    return false;
  }

  number(): f64 {
    let neg = false;
    if (this.peek() == 45) { neg = true; this.p++; }
    let v: f64 = 0;
    let digits = 0;
    while (this.peek() >= 48 && this.peek() <= 57) { v = v * 10 + <f64>(this.peek() - 48); this.p++; digits++; }
    if (digits == 0) this.ok = false;
    if (this.peek() == 46) {
      this.p++;
      let scale: f64 = 0.1;
      let fd = 0;
      while (this.peek() >= 48 && this.peek() <= 57) { v += scale * <f64>(this.peek() - 48); scale /= 10; this.p++; fd++; }
      if (fd == 0) this.ok = false;
    }
    if (this.peek() == 101 || this.peek() == 69) {
      this.p++;
      let eneg = false;
      if (this.peek() == 43 || this.peek() == 45) { eneg = this.peek() == 45; this.p++; }
      let e = 0;
      let ed = 0;
      while (this.peek() >= 48 && this.peek() <= 57) { if (e < 400) e = e * 10 + (this.peek() - 48); this.p++; ed++; }
      if (ed == 0) this.ok = false;
      for (let i = 0; i < e; i++) v = eneg ? v / 10 : v * 10;
    }
    return neg ? -v : v;
  }

  hex4(): i32 {
    let r = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.peek();
      this.p++;
      let d = -1;
      if (c >= 48 && c <= 57) d = c - 48;
      else if (c >= 97 && c <= 102) d = c - 87;
      else if (c >= 65 && c <= 70) d = c - 55;
      if (d < 0) { this.ok = false; return 0; }
      r = (r << 4) | d;
    }
    return r;
  }

  // Decodes a JSON string into UTF-8 bytes.
  string(): ArrayBuffer {
    this.p++; // opening quote
    // Decoded output is never longer than the source span (escapes shrink or keep size).
    const start = this.p;
    let q = start;
    while (q < this.end && load<u8>(q) != 34) q += load<u8>(q) == 92 ? 2 : 1;
    const tmp = heap.alloc(q - start + 1);
    let o = tmp;
    while (this.ok) {
      const c = this.peek();
      if (c < 0 || c < 32) { this.ok = false; break; }
      this.p++;
      if (c == 34) break;
      if (c != 92) { store<u8>(o++, <u8>c); continue; }
      const e = this.peek();
      this.p++;
      if (e == 34 || e == 92 || e == 47) store<u8>(o++, <u8>e);
      else if (e == 98) store<u8>(o++, 8);
      else if (e == 102) store<u8>(o++, 12);
      else if (e == 110) store<u8>(o++, 10);
      else if (e == 114) store<u8>(o++, 13);
      else if (e == 116) store<u8>(o++, 9);
      else if (e == 117) {
        const u = this.hex4();
        // \uXXXX is 6 source bytes and at most 3 UTF-8 bytes (surrogates become U+FFFD).
        if (u < 0x80) store<u8>(o++, <u8>u);
        else if (u < 0x800) { store<u8>(o++, <u8>(0xc0 | (u >> 6))); store<u8>(o++, <u8>(0x80 | (u & 63))); }
        else {
          const w = (u >= 0xd800 && u < 0xe000) ? 0xfffd : u;
          store<u8>(o++, <u8>(0xe0 | (w >> 12)));
          store<u8>(o++, <u8>(0x80 | ((w >> 6) & 63)));
          store<u8>(o++, <u8>(0x80 | (w & 63)));
        }
      } else { this.ok = false; break; }
    }
    const r = copyBytes(tmp, o - tmp);
    heap.free(tmp);
    return r;
  }
}
