/**
 * Subject kinds FDS can block and count, and their canonical forms: one
 * subject has exactly one spelling, so `2001:DB8::1` and `2001:db8:0::1`
 * (or `::ffff:10.0.0.1` and `10.0.0.1`) hit the same block.
 */
import { isIP } from 'node:net';

import { SUBJECT_KINDS, type SubjectKind } from '../pipeline/events.js';
import { digestText, isWellFormed } from '../pipeline/text.js';

export { SUBJECT_KINDS, type SubjectKind };

export function isSubjectKind(v: unknown): v is SubjectKind {
  return typeof v === 'string' && (SUBJECT_KINDS as readonly string[]).includes(v);
}

const MAX_SUBJECT = 512;
const CONTROL = /[\u0000-\u001f\u007f]/;
const HEX_CERT = /^[0-9a-f]+$/;

/**
 * A subject's part of its Redis keys: one per distinct subject. Longer subjects are stored by hash so one
 * key stays small (Redis keys are bytes, not free); so are subjects with a lone surrogate (UTF-8 would
 * merge them, see pipeline/text.ts) and subjects that themselves start with `sha256`, which could otherwise
 * spell another subject's hashed form.
 */
export function keySubject(subject: string): string {
  if (subject.length <= 200 && !subject.startsWith('sha256') && isWellFormed(subject)) return subject;
  return `sha256:${digestText(subject, 'hex')}`;
}

/** Parses an IPv4 address to an unsigned 32-bit number; -1 when it is not one. */
export function parseIPv4(s: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // no leading zeros: 010 is ambiguous (octal in some parsers)
      part = part * 10 + (c - 48);
      if (part > 255 || ++digits > 3) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

/** Parses an IPv6 address to 8 16-bit groups; undefined when it is not one. Accepts an embedded IPv4 tail. */
export function parseIPv6(input: string): number[] | undefined {
  let s = input;
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  if (isIP(s) !== 6) return undefined;
  const lastColon = s.lastIndexOf(':');
  const lastPart = s.slice(lastColon + 1);
  if (lastPart.includes('.')) {
    // Embedded IPv4 tail (::ffff:1.2.3.4): rewrite as two hex groups, then parse uniformly.
    const v4 = parseIPv4(lastPart);
    if (v4 < 0) return undefined;
    s = `${s.slice(0, lastColon + 1)}${Math.floor(v4 / 65536).toString(16)}:${(v4 % 65536).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (p: string) => (p === '' ? [] : p.split(':').map((h) => (/^[0-9a-fA-F]{1,4}$/.test(h) ? parseInt(h, 16) : -1)));
  let groups: number[];
  if (halves.length === 2) {
    const head = parse(halves[0]!);
    const rest = parse(halves[1]!);
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else groups = parse(s);
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) return undefined;
  return groups;
}

function formatIPv4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** RFC 5952 text: lowercase, longest zero run (≥ 2 groups) compressed. */
function formatIPv6(g: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Canonical IP text, IPv4-mapped IPv6 as plain IPv4; undefined when `s` is no IP address. */
export function canonicalIp(s: string): string | undefined {
  const v4 = parseIPv4(s);
  if (v4 >= 0) return s; // the parser rejects every non-canonical IPv4 spelling
  const g = parseIPv6(s);
  if (!g) return undefined;
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) return formatIPv4(g[6]! * 65536 + g[7]!);
  return formatIPv6(g);
}

export type SubjectCheck = { ok: true; subject: string } | { ok: false; error: string };

/**
 * Validates and canonicalizes an admin-supplied subject. For `ip`, a CIDR
 * range is allowed (and returned canonical, e.g. `10.0.0.0/8`); a /32 or /128
 * becomes the plain address.
 */
export function normalizeSubject(kind: SubjectKind, raw: unknown): SubjectCheck {
  if (typeof raw !== 'string' || raw.trim() === '') return { ok: false, error: `subject must be a non-empty string` };
  // Addresses and hex have no spaces of their own; any other subject is taken exactly as Checks report
  // it (trimmed, "mallory " could never be blocked and a block typed for it would land on "mallory").
  const s = kind === 'ip' || kind === 'cert' ? raw.trim() : raw;
  if (s.length > MAX_SUBJECT) return { ok: false, error: `subject is longer than ${MAX_SUBJECT} characters` };
  if (CONTROL.test(s)) return { ok: false, error: 'subject contains control characters' };
  switch (kind) {
    case 'ip': {
      const slash = s.indexOf('/');
      if (slash === -1) {
        const ip = canonicalIp(s);
        return ip ? { ok: true, subject: ip } : { ok: false, error: `"${s}" is not an IPv4 or IPv6 address (or CIDR range like 10.0.0.0/8, 2001:db8::/32)` };
      }
      const cidr = canonicalCidr(s);
      return cidr ? { ok: true, subject: cidr } : { ok: false, error: `"${s}" is not a valid CIDR range (e.g. 10.0.0.0/8, 2001:db8::/32)` };
    }
    case 'cert': {
      const hex = s.replace(/:/g, '').toLowerCase();
      if (!HEX_CERT.test(hex) || hex.length > 128)
        return { ok: false, error: `"${s}" is not a certificate fingerprint or serial (hex, optionally colon-separated)` };
      // 64 digits are a SHA-256 fingerprint, whose zeros count; anything shorter is a serial, which
      // certificate facts carry without leading zeros (OpenSSL and Node print them with one: 0A:1B:2C).
      return { ok: true, subject: hex.length === 64 ? hex : hex.replace(/^0+(?=.)/, '') };
    }
    default:
      return { ok: true, subject: s };
  }
}

/** Canonical `address/prefix` with host bits zeroed; /32 (/128) collapses to the address; undefined when invalid. */
export function canonicalCidr(s: string): string | undefined {
  const slash = s.indexOf('/');
  if (slash === -1) return canonicalIp(s);
  const addr = s.slice(0, slash);
  const lenText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  const v4 = parseIPv4(addr);
  if (v4 >= 0) {
    if (len > 32) return undefined;
    const masked = len === 0 ? 0 : (v4 & (0xffffffff << (32 - len))) >>> 0;
    return len === 32 ? formatIPv4(masked) : `${formatIPv4(masked)}/${len}`;
  }
  const g = parseIPv6(addr);
  if (!g || len > 128) return undefined;
  // An IPv4-mapped range (::ffff:203.0.113.0/120) is the IPv4 range it maps: Checks report mapped sources as IPv4.
  if (len >= 96 && g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return canonicalCidr(`${formatIPv4(g[6]! * 65536 + g[7]!)}/${len - 96}`);
  }
  const masked = g.map((x, i) => {
    const bits = Math.min(16, Math.max(0, len - i * 16));
    return bits === 0 ? 0 : x & ((0xffff << (16 - bits)) & 0xffff);
  });
  return len === 128 ? formatIPv6(masked) : `${formatIPv6(masked)}/${len}`;
}
