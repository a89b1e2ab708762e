/**
 * A real local Redis Cluster for tests and benchmarks: `redis-server --cluster-enabled yes` on free
 * loopback ports, joined by `redis-cli --cluster create` (Debian's redis-server and redis-tools), torn
 * down by pid. Also reads which master serves which slots (CLUSTER NODES), and small Redis probes
 * shared by tests and benchmarks.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import { freePort, sleep } from './process.js';

export interface ClusterNode {
  readonly port: number;
  readonly proc: ChildProcess;
}

export interface LocalCluster {
  readonly nodes: readonly ClusterNode[];
  stop(): void;
}

async function until(what: string, cond: () => Promise<boolean>, limitMs: number): Promise<void> {
  const end = Date.now() + limitMs;
  for (;;) {
    try {
      if (await cond()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Whether a redis-server answers on `port` (no retries). */
export async function ping(port: number): Promise<boolean> {
  const r = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/** `masters` masters with `replicas` replicas each; `nodeTimeoutMs` is how soon a dead master's replica takes over. */
export async function startCluster(masters = 3, replicas = 0, nodeTimeoutMs = 1000): Promise<LocalCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'passgate-redis-cluster-'));
  const nodes: ClusterNode[] = [];
  const stop = () => {
    for (const n of nodes) n.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort();
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes'];
      args.push('--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', String(nodeTimeoutMs), '--dir', dir);
      nodes.push({ port, proc: spawn('redis-server', args, { stdio: 'ignore' }) });
    }
    for (const { port } of nodes) await until(`redis-server :${port}`, () => ping(port), 10_000);
    await new Promise<void>((resolve, reject) =>
      execFile('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 30_000 }, (err) =>
        err ? reject(new Error(`redis-cli --cluster create failed: ${err.message}`)) : resolve(),
      ),
    );
    await until(`cluster_state:ok and ${masters} masters on every node`, async () => {
      for (const { port } of nodes) {
        const r = new Redis(port, '127.0.0.1');
        try {
          if (!(await r.cluster('INFO')).includes('cluster_state:ok')) return false;
        } finally {
          r.disconnect();
        }
        if ((await slotOwners(port)).size !== masters) return false;
      }
      return true;
    }, 20_000);
  } catch (err) {
    stop();
    throw err;
  }
  return { nodes, stop };
}

/** Master port → the slot ranges it serves, as one node sees it (failed masters left out). */
export async function slotOwners(port: number): Promise<Map<number, Array<[number, number]>>> {
  const out = new Map<number, Array<[number, number]>>();
  const r = new Redis(port, '127.0.0.1');
  try {
    const text = (await r.cluster('NODES')) as string;
    for (const line of text.trim().split('\n')) {
      const f = line.split(' ');
      if (!f[2]!.includes('master') || f[2]!.includes('fail')) continue;
      const p = Number(f[1]!.split('@')[0]!.split(':')[1]);
      const ranges: Array<[number, number]> = [];
      for (const s of f.slice(8)) {
        if (s.startsWith('[')) continue; // a slot being migrated
        const [a, b] = s.split('-');
        ranges.push([Number(a), Number(b ?? a)]);
      }
      if (ranges.length > 0) out.set(p, ranges);
    }
  } finally {
    r.disconnect();
  }
  return out;
}

/** The port of the master serving `key`'s slot. */
export function ownerOf(owners: Map<number, Array<[number, number]>>, key: string): number {
  const slot = calculateSlot(key);
  for (const [port, ranges] of owners) if (ranges.some(([a, b]) => slot >= a && slot <= b)) return port;
  throw new Error(`no master serves slot ${slot}`);
}

/** Keys matching `pattern` on one node (SCAN). */
export async function countKeys(port: number, pattern: string): Promise<number> {
  const r = new Redis(port, '127.0.0.1');
  try {
    let n = 0;
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      n += keys.length;
      cursor = next;
    } while (cursor !== '0');
    return n;
  } finally {
    r.disconnect();
  }
}

/** EVALSHA/EVAL calls so far on the Redis at `url` (INFO commandstats). */
export async function scriptCalls(url: string): Promise<number> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    const info = await r.info('commandstats');
    let n = 0;
    for (const m of info.matchAll(/cmdstat_(evalsha|eval):calls=(\d+)/g)) n += Number(m[2]);
    return n;
  } finally {
    r.disconnect();
  }
}
