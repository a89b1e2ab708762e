/**
 * Reads a V8 `.cpuprofile` (from `node --cpu-prof`) and ranks functions by
 * self time, so a benchmark can name the hot spots in our own code.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Only count samples taken between `fromEndMs` and `toEndMs` before the profile ended (e.g. the load window, not startup). */
export interface ProfileWindow {
  readonly fromEndMs: number;
  readonly toEndMs: number;
}

export interface SelfTimeRow {
  readonly fn: string;
  /** Repository-relative file:line, or the module URL for dependencies / node internals. */
  readonly where: string;
  readonly selfMs: number;
  /** Share of the non-idle profile time. */
  readonly share: number;
  /** Time with this function anywhere on the stack (recursion counted once). */
  readonly inclusiveMs: number;
  readonly inclusiveShare: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly idleMs: number;
  readonly gcMs: number;
  /** Busy time split by origin: our code, node_modules, node internals/native. */
  readonly byOrigin: Record<'ours' | 'dependencies' | 'node' | 'other', number>;
  readonly top: readonly SelfTimeRow[];
  readonly topOurs: readonly SelfTimeRow[];
  /** Our functions ranked by inclusive time: which parts of the pipeline dominate. */
  readonly topOursInclusive: readonly SelfTimeRow[];
}

/** Inclusive hits per function key: each node's subtree, skipping nodes whose ancestor is the same function. */
function inclusiveHits(profile: CpuProfile, hits: Map<number, number>, keyOf: (n: ProfileNode) => string): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const childIds = new Set(profile.nodes.flatMap((n) => n.children ?? []));
  const subtree = new Map<number, number>();
  const total = (id: number): number => {
    const cached = subtree.get(id);
    if (cached !== undefined) return cached;
    const node = byId.get(id);
    let sum = hits.get(id) ?? 0;
    for (const c of node?.children ?? []) sum += total(c);
    subtree.set(id, sum);
    return sum;
  };
  const out = new Map<string, number>();
  const onPath = new Map<string, number>();
  // Iterative DFS: profiles can be deeper than a comfortable recursion depth.
  const stack: Array<{ id: number; leave: boolean }> = profile.nodes.filter((n) => !childIds.has(n.id)).map((n) => ({ id: n.id, leave: false }));
  while (stack.length > 0) {
    const { id, leave } = stack.pop()!;
    const node = byId.get(id);
    if (!node) continue;
    const key = keyOf(node);
    if (leave) {
      const n = (onPath.get(key) ?? 1) - 1;
      if (n === 0) onPath.delete(key);
      else onPath.set(key, n);
      continue;
    }
    if (!onPath.has(key)) out.set(key, (out.get(key) ?? 0) + total(id));
    onPath.set(key, (onPath.get(key) ?? 0) + 1);
    stack.push({ id, leave: true });
    for (const c of node.children ?? []) stack.push({ id: c, leave: false });
  }
  return out;
}

function location(url: string, line: number, repoRoot: string): string {
  if (url.startsWith('file://')) {
    try {
      const rel = relative(repoRoot, fileURLToPath(url));
      // Under tsx the line is of the transpiled module; only the file is reliable then.
      return line > 0 ? `${rel}:${line + 1}` : rel;
    } catch {
      return url;
    }
  }
  return url === '' ? '(native)' : url;
}

/** Per-node sample counts, restricted to a window when the profile has sample timestamps. */
function hitsByNode(profile: CpuProfile, window: ProfileWindow | undefined): { hits: Map<number, number>; spanMs: number } {
  const hits = new Map<number, number>();
  const { samples, timeDeltas } = profile;
  if (window === undefined || samples === undefined || timeDeltas === undefined || samples.length !== timeDeltas.length) {
    for (const n of profile.nodes) hits.set(n.id, n.hitCount ?? 0);
    return { hits, spanMs: (profile.endTime - profile.startTime) / 1000 };
  }
  const from = profile.endTime - window.fromEndMs * 1000;
  const to = profile.endTime - window.toEndMs * 1000;
  let t = profile.startTime;
  let first = Infinity;
  let last = -Infinity;
  for (let i = 0; i < samples.length; i++) {
    t += timeDeltas[i]!;
    if (t < from || t > to) continue;
    if (t < first) first = t;
    last = t;
    hits.set(samples[i]!, (hits.get(samples[i]!) ?? 0) + 1);
  }
  return { hits, spanMs: last > first ? (last - first) / 1000 : 0 };
}

export function summarizeProfile(path: string, repoRoot: string, ourPrefixes: readonly string[], limit = 15, window?: ProfileWindow): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const { hits: hitMap, spanMs } = hitsByNode(profile, window);
  let totalHits = 0;
  for (const h of hitMap.values()) totalHits += h;
  totalHits ||= 1;
  const msPerHit = spanMs / totalHits;
  const bucket = new Map<string, { fn: string; where: string; hits: number }>();
  let idle = 0;
  let gc = 0;
  const byOrigin = { ours: 0, dependencies: 0, node: 0, other: 0 };
  for (const node of profile.nodes) {
    const hits = hitMap.get(node.id) ?? 0;
    if (hits === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += hits;
      continue;
    }
    if (functionName === '(garbage collector)') gc += hits;
    const where = location(url, lineNumber, repoRoot);
    if (ourPrefixes.some((p) => where.startsWith(p))) byOrigin.ours += hits;
    else if (where.includes('node_modules')) byOrigin.dependencies += hits;
    else if (url.startsWith('node:') || url === '') byOrigin.node += hits;
    else byOrigin.other += hits;
    const key = `${functionName}@${where}`;
    const entry = bucket.get(key);
    if (entry) entry.hits += hits;
    else bucket.set(key, { fn: functionName || '(anonymous)', where, hits });
  }
  const busy = totalHits - idle || 1;
  const keyOf = (n: ProfileNode) => `${n.callFrame.functionName}@${location(n.callFrame.url, n.callFrame.lineNumber, repoRoot)}`;
  const inclusive = inclusiveHits(profile, hitMap, keyOf);
  for (const node of profile.nodes) {
    // Functions with no self time can still dominate inclusively (e.g. the Check handler).
    const key = keyOf(node);
    if (!bucket.has(key) && (inclusive.get(key) ?? 0) > 0 && node.callFrame.functionName !== '(root)') {
      bucket.set(key, { fn: node.callFrame.functionName || '(anonymous)', where: location(node.callFrame.url, node.callFrame.lineNumber, repoRoot), hits: 0 });
    }
  }
  const rows = [...bucket.entries()]
    .sort((a, b) => b[1].hits - a[1].hits)
    .map(([key, e]) => {
      const inc = inclusive.get(key) ?? e.hits;
      return { fn: e.fn, where: e.where, selfMs: e.hits * msPerHit, share: e.hits / busy, inclusiveMs: inc * msPerHit, inclusiveShare: inc / busy };
    });
  const ours = rows.filter((r) => ourPrefixes.some((p) => r.where.startsWith(p)));
  return {
    totalMs: totalHits * msPerHit,
    idleMs: idle * msPerHit,
    gcMs: gc * msPerHit,
    byOrigin: {
      ours: byOrigin.ours * msPerHit,
      dependencies: byOrigin.dependencies * msPerHit,
      node: byOrigin.node * msPerHit,
      other: byOrigin.other * msPerHit,
    },
    top: rows.filter((r) => r.selfMs > 0).slice(0, limit),
    topOurs: ours.filter((r) => r.selfMs > 0).slice(0, limit),
    topOursInclusive: [...ours].sort((a, b) => b.inclusiveMs - a.inclusiveMs).slice(0, limit),
  };
}
