/**
 * `fds.exempt.ip`: source ranges the detection rules never count, so they are
 * never auto-blocked (loopback in the dev config, health checkers, NAT of a
 * trusted office). Manual blocks from the admin API still apply to them.
 */
import { z } from 'zod';
import { CidrSet } from './cidr.js';
import { canonicalCidr } from './subjects.js';
import type { BlockRecord, CounterOp } from './store/store.js';

/** An address or CIDR range, kept canonical (a /32 or /128 range collapses to the address). */
const range = z.string().transform((s, ctx) => {
  const cidr = canonicalCidr(s.trim());
  if (!cidr) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not an IP address or CIDR range (e.g. 127.0.0.0/8, ::1/128)` });
    return z.NEVER;
  }
  return cidr;
});

export const exemptSchema = z.strictObject({ ip: z.array(range).default([]) }).prefault({});

interface Compiled {
  readonly addresses: ReadonlySet<string>;
  readonly ranges: CidrSet;
}

// Compiled once per config (the settings array is replaced on reload).
const compiled = new WeakMap<readonly string[], Compiled>();

function setOf(entries: readonly string[]): Compiled {
  let c = compiled.get(entries);
  if (!c) {
    const ranges = entries.filter((e) => e.includes('/')).map((subject) => ({ kind: 'ip', subject, expiresAt: null }) as unknown as BlockRecord);
    c = { addresses: new Set(entries.filter((e) => !e.includes('/'))), ranges: new CidrSet(ranges) };
    compiled.set(entries, c);
  }
  return c;
}

export function isExempt(ip: string, entries: readonly string[]): boolean {
  const c = setOf(entries);
  return c.addresses.has(ip) || c.ranges.match(ip) !== undefined;
}

/** `ops` without the counters of exempt source IPs (the same array when nothing is exempt). */
export function withoutExempt(ops: readonly CounterOp[], ranges: readonly string[]): readonly CounterOp[] {
  if (ranges.length === 0 || ops.length === 0) return ops;
  return ops.filter((o) => o.kind !== 'ip' || !isExempt(o.subject, ranges));
}
