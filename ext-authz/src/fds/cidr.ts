/**
 * In-process CIDR block matching. Ranges are grouped by prefix length, so a
 * lookup costs one masked hash probe per distinct length in use (a handful
 * in practice) however many ranges are blocked.
 */
import { parseIPv4, parseIPv6 } from './subjects.js';
import type { BlockRecord } from './store/store.js';

export class CidrSet {
  private readonly v4 = new Map<number, Map<number, BlockRecord>>();
  private readonly v6 = new Map<number, Map<string, BlockRecord>>();
  private v4Lengths: number[] = [];
  private v6Lengths: number[] = [];
  readonly size: number;

  /** `records` hold canonical CIDR subjects (see canonicalCidr); bad ones are skipped. */
  constructor(records: readonly BlockRecord[]) {
    let n = 0;
    for (const r of records) {
      const slash = r.subject.indexOf('/');
      if (slash === -1) continue;
      const len = Number(r.subject.slice(slash + 1));
      const addr = r.subject.slice(0, slash);
      const v4 = parseIPv4(addr);
      if (v4 >= 0) {
        let m = this.v4.get(len);
        if (!m) this.v4.set(len, (m = new Map()));
        m.set(maskV4(v4, len), r);
        n++;
        continue;
      }
      const g = parseIPv6(addr);
      if (!g) continue;
      let m = this.v6.get(len);
      if (!m) this.v6.set(len, (m = new Map()));
      m.set(maskV6(g, len), r);
      n++;
    }
    // Longest prefix first: the most specific block is the one reported.
    this.v4Lengths = [...this.v4.keys()].sort((a, b) => b - a);
    this.v6Lengths = [...this.v6.keys()].sort((a, b) => b - a);
    this.size = n;
  }

  /** The block covering `ip` (canonical text) that has not expired, if any. */
  match(ip: string, now = Date.now()): BlockRecord | undefined {
    if (this.size === 0 || ip === '') return undefined;
    const v4 = parseIPv4(ip);
    if (v4 >= 0) {
      for (const len of this.v4Lengths) {
        const r = this.v4.get(len)!.get(maskV4(v4, len));
        if (r && (r.expiresAt === null || r.expiresAt > now)) return r;
      }
      return undefined;
    }
    if (this.v6Lengths.length === 0) return undefined;
    const g = parseIPv6(ip);
    if (!g) return undefined;
    for (const len of this.v6Lengths) {
      const r = this.v6.get(len)!.get(maskV6(g, len));
      if (r && (r.expiresAt === null || r.expiresAt > now)) return r;
    }
    return undefined;
  }
}

function maskV4(v: number, len: number): number {
  return len === 0 ? 0 : (v & (0xffffffff << (32 - len))) >>> 0;
}

function maskV6(g: readonly number[], len: number): string {
  let out = '';
  for (let i = 0; i < 8; i++) {
    const bits = Math.min(16, Math.max(0, len - i * 16));
    out += `${bits === 0 ? 0 : g[i]! & ((0xffff << (16 - bits)) & 0xffff)},`;
  }
  return out;
}
