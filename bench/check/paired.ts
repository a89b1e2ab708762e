/**
 * `npm run bench:paired -- [--rounds 9] [--secs 3] [--body FILE] LABEL=CONFIG[@CHECKOUT][^NODE_FLAGS] ...`
 *
 * Paired throughput of two or more Passgate builds or configurations: all of them pinned to CPU 0, each
 * driven by its own h2load on CPU 1 AT THE SAME TIME, round after round. On a shared virtual machine the
 * CPU's speed changes from second to second (single rounds of one server vary by ±30 %); loaded together,
 * every server sees the same changes, so the per-round ratio to the first one is steady (an A/A run of the
 * same build gives 0.97–1.03). Prints, per variant, the median of the per-round throughput ratios and the
 * server CPU per Check (from /proc, warm-up second included).
 *
 * CONFIG is a Passgate YAML (e.g. one bench:check wrote under .bench-out/check/<scenario>/), or one of the
 * floors bench:check measures against: `noop` (grpc-js no-op), `noop-h2` (the same on Passgate's transport),
 * `raw` (node:http2 answering a fixed response, no decode). For a Passgate YAML its Redis URL,
 * gRPC and admin ports and FDS key prefix are replaced per variant. CHECKOUT is another checkout of the
 * repository (a `git worktree` of the baseline commit) with node_modules, default this one. NODE_FLAGS are
 * extra node options separated by spaces. Redis is a private redis-server on CPU 1. Needs taskset, h2load
 * and redis-server; the body defaults to the full-chain request bench:check wrote.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

interface Variant {
  readonly label: string;
  readonly config: string;
  readonly root: string;
  readonly flags: string[];
  port: number;
  proc?: ChildProcess;
  readonly ratios: number[];
  readonly cpu: number[];
  readonly rps: number[];
}

function parse(argv: string[]): { rounds: number; secs: number; body: string; variants: Variant[] } {
  let rounds = 9;
  let secs = 3;
  let body = join(ROOT, '.bench-out/check/full/h2load-body.bin');
  const variants: Variant[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--rounds') rounds = Number(argv[++i]);
    else if (a === '--secs') secs = Number(argv[++i]);
    else if (a === '--body') body = resolve(argv[++i]!);
    else {
      const eq = a.indexOf('=');
      if (eq <= 0) throw new Error(`"${a}": write a variant as LABEL=CONFIG[@CHECKOUT][^NODE_FLAGS]`);
      const [rest, flags] = a.slice(eq + 1).split('^') as [string, string | undefined];
      const [config, root] = rest.split('@') as [string, string | undefined];
      variants.push({ label: a.slice(0, eq), config: config in FLOORS ? config : resolve(config), root: resolve(root ?? ROOT), flags: flags ? flags.split(' ') : [], port: 0, ratios: [], cpu: [], rps: [] });
    }
  }
  if (variants.length < 2) throw new Error('name at least two variants (the first is the baseline)');
  if (!(rounds >= 1 && secs >= 1)) throw new Error('--rounds and --secs must be at least 1');
  if (!existsSync(body)) throw new Error(`${body} does not exist: run \`npm run bench:check -- --scenario full\` once, or pass --body`);
  return { rounds, secs, body, variants };
}

/** Floors a variant can name instead of a config: bench:check's no-op servers and the raw node:http2 ceiling. */
const FLOORS: Record<string, string[]> = {
  noop: ['bench/check/noop-server.ts', '--transport', 'grpc-js'],
  'noop-h2': ['bench/check/noop-server.ts', '--transport', 'h2'],
  raw: ['bench/check/raw-h2-server.ts'],
};

const freePort = () =>
  new Promise<number>((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => ok(p));
    });
  });

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const up = await new Promise<boolean>((ok) => {
      const c = connect(port, '127.0.0.1');
      c.on('connect', () => (c.destroy(), ok(true)));
      c.on('error', () => ok(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port} after 20 s`);
}

/** utime + stime of a process, ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function h2load(port: number, secs: number, body: string): Promise<{ rps: number; n: number }> {
  const { stdout } = await run('taskset', ['-c', '1', 'h2load', '-c', '1', '-m', '64', '-t', '1', '-D', `${secs}s`, '--warm-up-time', '1s', '-d', body,
    '-H', 'content-type: application/grpc', '-H', 'te: trailers', '-H', 'grpc-timeout: 1S', `http://127.0.0.1:${port}/envoy.service.auth.v3.Authorization/Check`]);
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(stdout)?.[1]);
  const n = Number(/requests: (\d+) total/.exec(stdout)?.[1]);
  const failed = /(\d+) failed, (\d+) errored/.exec(stdout);
  if (failed && Number(failed[1]) + Number(failed[2]) > 0) process.stderr.write(`  port ${port}: ${failed[0]}\n`);
  return { rps, n };
}

const median = (a: readonly number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function main(): Promise<void> {
  const { rounds, secs, body, variants } = parse(process.argv.slice(2));
  const redisPort = await freePort();
  const redis = spawn('taskset', ['-c', '1', 'redis-server', '--port', String(redisPort), '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  try {
    await waitForPort(redisPort);
    for (const v of variants) {
      v.port = await freePort();
      const floor = FLOORS[v.config];
      if (floor !== undefined) {
        const [script, ...args] = floor as [string, ...string[]];
        v.proc = spawn('taskset', ['-c', '0', process.execPath, ...v.flags, '--import', 'tsx', join(v.root, script), '--port', String(v.port), ...args], { cwd: v.root, stdio: ['ignore', 'ignore', 'inherit'] });
        process.stderr.write(`  ${v.label}: ${script} ${args.join(' ')} on :${v.port}\n`);
        continue;
      }
      const admin = await freePort();
      let y = readFileSync(v.config, 'utf8').replace(/redis:\/\/127\.0\.0\.1:\d+/g, `redis://127.0.0.1:${redisPort}`);
      y = y.replace(/(grpc:\n(?:.*\n)*?\s+port: )\d+/, `$1${v.port}`).replace(/(admin:\n(?:.*\n)*?\s+port: )\d+/, `$1${admin}`);
      y = y.replace(/keyPrefix: "[^"]*(?:\\\n[^"]*)*"/, `keyPrefix: "bench:paired:${process.pid}:${v.label}:"`);
      const file = join(tmpdir(), `passgate-paired-${process.pid}-${v.label}.yaml`);
      writeFileSync(file, y);
      const dist = join(v.root, 'dist/ext-authz/src/main.js');
      const entry = existsSync(dist) ? [dist] : ['--import', 'tsx', join(v.root, 'ext-authz/src/main.ts')];
      v.proc = spawn('taskset', ['-c', '0', process.execPath, ...v.flags, ...entry, 'serve', '--config', file], { cwd: v.root, stdio: ['ignore', 'ignore', 'inherit'] });
      process.stderr.write(`  ${v.label}: ${entry[entry.length - 1]} on :${v.port}\n`);
    }
    for (const v of variants) await waitForPort(v.port);
    for (const v of variants) await h2load(v.port, 2, body); // warm every server up alone first
    for (let r = 0; r < rounds; r++) {
      const before = variants.map((v) => cpuMs(v.proc!.pid!));
      const res = await Promise.all(variants.map((v) => h2load(v.port, secs, body)));
      variants.forEach((v, i) => {
        v.cpu.push(((cpuMs(v.proc!.pid!) - before[i]!) * 1000) / res[i]!.n);
        v.ratios.push(res[i]!.rps / res[0]!.rps);
        v.rps.push(res[i]!.rps);
      });
      process.stderr.write(`  round ${r + 1}/${rounds}: ${res.map((x) => x.rps.toFixed(0)).join(' / ')} rps\n`);
    }
    process.stdout.write(`\n| variant | throughput / ${variants[0]!.label} (median of ${rounds} paired rounds) | rounds | CPU per Check µs (median) |\n|---|---|---|---|\n`);
    for (const v of variants) {
      process.stdout.write(`| ${v.label} | ${median(v.ratios).toFixed(3)} | ${v.ratios.map((x) => x.toFixed(2)).join(' ')} | ${median(v.cpu).toFixed(0)} |\n`);
    }
  } finally {
    for (const v of variants) v.proc?.kill('SIGTERM');
    redis.kill();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:paired: ${err.message}\n`);
  process.exit(2);
});
