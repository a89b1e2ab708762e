/**
 * The path policy (docs/paths.md): route predicates match a normalized path,
 * and a path whose meaning depends on how the backend decodes it is refused.
 *
 * Normalization (RFC 3986 §6.2.2 plus slash merging, what Envoy's
 * `normalize_path` + `merge_slashes` do, so Istio `pathNormalization:
 * MERGE_SLASHES` agrees with it):
 * - percent-encodings of unreserved characters (ALPHA DIGIT - . _ ~) are
 *   decoded, other encodings keep their bytes with uppercase hex;
 * - runs of `/` become one `/`;
 * - `.` and `..` segments are removed (§5.2.4), never climbing above `/`.
 *
 * Refused (400, one reason each), because backends disagree on them:
 * encoded `/` `\` or `%` (double encoding), encoded or raw control bytes and
 * NUL, invalid `%` escapes, raw backslash, raw non-ASCII or whitespace, `;`
 * (path parameters: Tomcat/Spring strip them, others do not), `#`, segments
 * ending in `.` or a space (Windows/IIS drop them), overlong UTF-8 lead bytes
 * (%C0 %C1), and a path not starting with `/`.
 *
 * Pure and allocation-light: a path that is already normal is returned as is.
 */

export type PathResult = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly reason: string; readonly detail: string };

/** Longest path accepted, in characters (Envoy's default max header size is 60 KiB). */
export const MAX_PATH_CHARS = 8 * 1024;

/** Fast path: only characters that need no decision (no %, no dot segment possible without '.', no '//'). */
const PLAIN = /^\/[A-Za-z0-9\-_~!$&'()*+,=:@/.]*$/;

function refuse(reason: string, detail: string): PathResult {
  return { ok: false, reason, detail };
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(b: number): boolean {
  return (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b === 45 || b === 46 || b === 95 || b === 126;
}

const HEX = '0123456789ABCDEF';

/** RFC 3986 §5.2.4 on a path that has no empty segments (slashes already merged). */
function removeDotSegments(path: string): string {
  const segments = path.split('/');
  const out: string[] = [];
  // segments[0] is '' (path starts with '/').
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else out.push(s);
  }
  return `/${out.join('/')}`;
}

/**
 * Normalizes the path part of a request (no query). Never throws.
 * `''` (a Check without an HTTP path) stays `''`.
 */
export function normalizePath(raw: string): PathResult {
  if (raw === '') return { ok: true, path: '' };
  if (raw.length > MAX_PATH_CHARS) return refuse('path_too_long', `path is ${raw.length} characters, over ${MAX_PATH_CHARS}`);
  if (raw.charCodeAt(0) !== 47) return refuse('path_not_absolute', 'the path must start with "/"');
  if (PLAIN.test(raw) && raw.indexOf('//') === -1 && !/\.(\/|$)/.test(raw)) return { ok: true, path: raw };

  let decoded = '';
  // Percent-encoded bytes must spell well-formed UTF-8 (RFC 3629): no overlong forms (%C0%AE, %E0%80%AE
  // for "."), no surrogates, nothing past U+10FFFF, no sequence cut short. `need` continuation bytes are
  // still due, the next one in [lo, hi].
  let need = 0;
  let lo = 0x80;
  let hi = 0xbf;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c !== 37 && need > 0) return refuse('path_invalid_encoding', `UTF-8 sequence cut short at offset ${i}`);
    if (c === 37 /* % */) {
      const h = i + 2 < raw.length ? hexVal(raw.charCodeAt(i + 1)) : -1;
      const l = h === -1 ? -1 : hexVal(raw.charCodeAt(i + 2));
      if (l === -1) return refuse('path_invalid_encoding', `"%" at offset ${i} is not followed by two hex digits`);
      const b = h * 16 + l;
      if (b === 0x2f || b === 0x5c) return refuse('path_encoded_separator', `encoded "${b === 0x2f ? '/' : '\\'}" at offset ${i}`);
      if (b < 0x20 || b === 0x7f) return refuse('path_control_character', `encoded control byte 0x${b.toString(16).padStart(2, '0')} at offset ${i}`);
      if (b === 0x25) return refuse('path_double_encoding', `encoded "%" at offset ${i}`);
      if (need > 0) {
        if (b < lo || b > hi) return refuse('path_invalid_encoding', `%${HEX[h]}${HEX[l]} at offset ${i} breaks a UTF-8 sequence (overlong, surrogate or cut short)`);
        need--;
        lo = 0x80;
        hi = 0xbf;
      } else if (b >= 0x80) {
        if (b >= 0xc2 && b <= 0xdf) need = 1;
        else if (b >= 0xe0 && b <= 0xef) {
          need = 2;
          if (b === 0xe0) lo = 0xa0; // below: overlong
          if (b === 0xed) hi = 0x9f; // above: surrogates
        } else if (b >= 0xf0 && b <= 0xf4) {
          need = 3;
          if (b === 0xf0) lo = 0x90; // below: overlong
          if (b === 0xf4) hi = 0x8f; // above: past U+10FFFF
        } else return refuse('path_invalid_encoding', `%${HEX[h]}${HEX[l]} at offset ${i} cannot start a UTF-8 character (overlong or out of range)`);
      }
      if (b === 0x3b) return refuse('path_params', `encoded ";" at offset ${i}`);
      decoded += isUnreserved(b) ? String.fromCharCode(b) : `%${HEX[h]}${HEX[l]}`;
      i += 2;
      continue;
    }
    if (c < 0x20 || c === 0x7f) return refuse('path_control_character', `control byte 0x${c.toString(16).padStart(2, '0')} at offset ${i}`);
    if (c === 0x5c) return refuse('path_backslash', `"\\" at offset ${i}`);
    if (c === 0x3b) return refuse('path_params', `";" at offset ${i} (path parameters are read differently by backends)`);
    if (c === 0x23) return refuse('path_fragment', `"#" at offset ${i}`);
    if (c === 0x20 || c > 0x7e || c === 0x22 || c === 0x3c || c === 0x3e || c === 0x60 || c === 0x7b || c === 0x7c || c === 0x7d || c === 0x5e || c === 0x5b || c === 0x5d) {
      return refuse('path_invalid_character', `character 0x${c.toString(16)} at offset ${i} must be percent-encoded`);
    }
    decoded += raw[i];
  }
  if (need > 0) return refuse('path_invalid_encoding', 'the path ends inside a UTF-8 sequence');
  const merged = decoded.replace(/\/{2,}/g, '/');
  const path = removeDotSegments(merged);
  // A segment ending in "." or an (encoded) space means another segment on Windows-style backends.
  for (const seg of path.split('/')) {
    if (seg.endsWith('.') || seg.endsWith('%20')) return refuse('path_trailing_dot_or_space', `segment "${seg.slice(0, 64)}" ends in "." or a space`);
  }
  return { ok: true, path };
}

/** Splits what Envoy forwards as `request.http.path` (path and query) at the first `?`. */
export function splitPathAndQuery(full: string): { readonly path: string; readonly query: string | undefined } {
  const q = full.indexOf('?');
  return q === -1 ? { path: full, query: undefined } : { path: full.slice(0, q), query: full.slice(q + 1) };
}
