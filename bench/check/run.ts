/**
 * `npm run bench:check [-- --scenario core|mtls|passport|full|all|core,mtls,...]
 *  [--duration 6] [--warmup 1.5] [--rates 100,1000,2000] [--concurrency 64]
 *  [--no-h2load] [--no-audit] [--profile] [--quick] [--dist] [--pin] [--baseline DIR] [--cluster] [--h2load-rounds N]`
 *  --h2load-rounds N measures every h2load row N times (target order alternating) and shows the median round;
 *  --cluster adds the FDS Redis Cluster row (bench/check/cluster-row.ts: one node against 3 local masters,
 *  started for the run; needs redis-server and redis-cli), printed under the table;
 *  --baseline DIR also runs each scenario on the Passgate checkout in DIR (an older commit, e.g.
 *  `git archive <commit> | tar -x -C DIR` plus a node_modules link), as target "baseline": before/after in one run;
 *  --dist runs the compiled service (npm run build:ts first), as production does;
 *  --pin puts the servers on CPU 0 and the load generators on CPU 1 (taskset), and gives FDS scenarios a redis-server of
 *  their own on CPU 1 (unless BENCH_REDIS_URL is set).
 *
 * Drives Authorization/Check on Passgate, running as its own process over
 * loopback, from a separate load-generator process (grpc-js client; plus
 * h2load for the max-throughput row when installed), and does the same
 * against a no-op grpc-js Check server to get the throughput floor.
 * Several scenarios run in one go against the same floor (one Passgate
 * process per scenario, all side by side); the table then has "vs core"
 * (throughput against the core scenario's same row) and "vs no-op".
 * Prints a Markdown table and writes .bench-out/check.json.
 */
import { fork, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { verifyMix } from './verify.js';
import { freePort, spawnProcess, waitForPort, type Spawned } from '../common/process.js';
import { fmtMs, markdownTable, summarize, type LatencySummary } from '../common/stats.js';
import { summarizeProfile, type ProfileSummary } from '../common/cpuprofile.js';
import { SCENARIOS, type MixEntry, type PreparedScenario, type ServiceKnobs } from './scenarios.js';
import { CHECK_PATH, type RunCommand, type RunResult } from './protocol.js';
import { fdsClusterRow, type ClusterRow } from './cluster-row.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const OUT = join(ROOT, '.bench-out');
const GOAL_P99_MS = 2;
const GOAL_RATE = 1000;
const GOAL_RATIO = 0.8;
/** Issue 18: the full production chain against both floors. */
const GOAL_FULL_RATIO = 0.85;
const GOAL_CEILING_RATIO = 0.6;
/** Set from --pin before anything starts. */
const PIN = { enabled: false, serverCpu: 0, generatorCpu: 1 };

/** Moves every thread of a running process to one CPU (Linux taskset). */
function pinToCpu(pid: number, cpu: number): void {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

// ---------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------

interface Options {
  scenarios: string[];
  audit: boolean;
  durationMs: number;
  warmupMs: number;
  rates: number[];
  concurrency: number;
  h2load: boolean;
  profile: boolean;
  dist: boolean;
  /** Pin servers to CPU 0 and load generators to CPU 1 (taskset), so they stop competing for one core. */
  pin: boolean;
  /** Another checkout whose service runs beside ours as target "baseline" (before/after in the same run). */
  baseline?: string;
  /** Also measure the FDS Redis Cluster row (starts redis-server processes, so off by default). */
  cluster: boolean;
  /** h2load rows: this many rounds, target order alternating per round; the row shows the median round. */
  h2loadRounds: number;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { scenarios: ['core'], audit: true, durationMs: 6000, warmupMs: 1500, rates: [100, 1000, 2000], concurrency: 64, h2load: true, profile: false, dist: false, pin: false, cluster: false, h2loadRounds: 1 };
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
    return v;
  };
  const num = (s: string, flag: string): number => {
    const n = Number(s);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag}: "${s}" is not a positive number`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    switch (a) {
      case '--scenario': {
        const v = value(i++, a);
        opts.scenarios = v === 'all' ? Object.keys(SCENARIOS) : [...new Set(v.split(',').map((x) => x.trim()).filter((x) => x !== ''))];
        break;
      }
      case '--no-audit': opts.audit = false; break;
      case '--duration': opts.durationMs = num(value(i++, a), a) * 1000; break;
      case '--warmup': opts.warmupMs = num(value(i++, a), a) * 1000; break;
      case '--rates': opts.rates = value(i++, a).split(',').map((r) => num(r, a)); break;
      case '--concurrency': opts.concurrency = Math.round(num(value(i++, a), a)); break;
      case '--no-h2load': opts.h2load = false; break;
      case '--profile': opts.profile = true; break;
      case '--dist': opts.dist = true; break;
      case '--pin': opts.pin = true; break;
      case '--baseline': opts.baseline = resolve(value(i++, a)); break;
      case '--cluster': opts.cluster = true; break;
      case '--h2load-rounds': opts.h2loadRounds = Math.max(1, Math.round(Number(value(i++, a)))); break;
      case '--quick': opts.durationMs = 2000; opts.warmupMs = 500; break;
      default: throw new Error(`unknown argument "${a}"; see the header of bench/check/run.ts`);
    }
  }
  for (const name of opts.scenarios) {
    if (!SCENARIOS[name]) throw new Error(`--scenario: unknown "${name}"; known: ${Object.keys(SCENARIOS).join(', ')}, all (or a comma-separated list)`);
  }
  if (opts.scenarios.length === 0) throw new Error('--scenario: name at least one scenario');
  if (opts.profile && opts.scenarios.length > 1) throw new Error('--profile profiles one scenario: pass a single --scenario');
  return opts;
}

// ---------------------------------------------------------------------------
// Encoding and verification with our own protos (grpc-js + proto-loader)
// ---------------------------------------------------------------------------

const { service } = loadAuthorizationService();
const checkMethod = service['Check'] as grpc.MethodDefinition<CheckRequest, CheckResponse>;
const encode = (req: CheckRequest): Buffer => checkMethod.requestSerialize(req);

/** Deterministic weighted order (mulberry32), identical for every target. */
function weightedSequence(mix: readonly MixEntry[], length = 2000): number[] {
  const total = mix.reduce((s, m) => s + m.weight, 0);
  const seq: number[] = [];
  mix.forEach((m, i) => {
    // At least once, so every entry (e.g. each of many pooled certificates) is exercised.
    const n = Math.max(1, Math.round((m.weight / total) * length));
    for (let k = 0; k < n; k++) seq.push(i);
  });
  let a = 0x9e3779b9;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = seq.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [seq[i], seq[j]] = [seq[j]!, seq[i]!];
  }
  return seq;
}


// ---------------------------------------------------------------------------
// Load generator process
// ---------------------------------------------------------------------------

class LoadGen {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly waiting = new Map<number, (r: RunResult) => void>();

  constructor() {
    this.child = fork(join(HERE, 'loadgen.ts'), [], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    if (PIN.enabled && this.child.pid !== undefined) pinToCpu(this.child.pid, PIN.generatorCpu);
    this.child.on('message', (msg: RunResult | { type: string }) => {
      if ('id' in msg) {
        this.waiting.get(msg.id)?.(msg);
        this.waiting.delete(msg.id);
      }
    });
    this.child.on('exit', (code) => {
      for (const w of this.waiting.values()) w({ id: 0, error: `load generator exited (${code})` } as RunResult);
      this.waiting.clear();
    });
  }

  run(cmd: Omit<RunCommand, 'id'>): Promise<RunResult> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ ...cmd, id });
    });
  }

  close(target: string): void {
    this.child.send({ type: 'close', target });
  }

  stop(): void {
    this.child.disconnect();
  }
}

// ---------------------------------------------------------------------------
// h2load
// ---------------------------------------------------------------------------

function h2loadVersion(): string | undefined {
  try {
    const out = execFileSync('h2load', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

interface H2Result {
  achievedRps: number;
  latency: LatencySummary;
  errors: Record<string, number>;
  raw: string;
}

function runH2load(port: number, bodyFile: string, logFile: string, opts: Options): H2Result {
  rmSync(logFile, { force: true });
  const args = [
    '-c', '1', '-m', String(opts.concurrency), '-t', '1',
    '-D', `${Math.round(opts.durationMs)}ms`, '--warm-up-time', `${Math.round(opts.warmupMs)}ms`,
    '-d', bodyFile,
    '-H', 'content-type: application/grpc', '-H', 'te: trailers', '-H', 'grpc-timeout: 1S',
    '--log-file', logFile,
    `http://127.0.0.1:${port}${CHECK_PATH}`,
  ];
  const raw = execFileSync(PIN.enabled ? 'taskset' : 'h2load', PIN.enabled ? ['-c', String(PIN.generatorCpu), 'h2load', ...args] : args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.durationMs + opts.warmupMs + 30_000 });
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(raw)?.[1] ?? NaN);
  const reqs = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(raw);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(raw);
  const errors: Record<string, number> = {};
  if (reqs && Number(reqs[5]) > 0) errors['failed'] = Number(reqs[5]);
  if (reqs && Number(reqs[6]) > 0) errors['errored'] = Number(reqs[6]);
  if (reqs && Number(reqs[7]) > 0) errors['timeout'] = Number(reqs[7]);
  // gRPC answers are HTTP 200 (the gRPC status is in trailers, checked once by verifyMix); 4xx/5xx mean the call never reached the handler.
  if (codes && Number(codes[3]) + Number(codes[4]) > 0) errors['http 4xx/5xx'] = Number(codes[3]) + Number(codes[4]);
  const lat: number[] = [];
  if (existsSync(logFile)) {
    for (const line of readFileSync(logFile, 'utf8').split('\n')) {
      const cols = line.split('\t');
      if (cols.length >= 3 && cols[1] === '200') lat.push(Number(cols[2]) / 1000);
    }
  }
  return { achievedRps: rps, latency: summarize(lat), errors, raw };
}

// ---------------------------------------------------------------------------
// Targets and rows
// ---------------------------------------------------------------------------

interface Row {
  /** Scenario of a passgate row; undefined for the no-op floor (shared by all scenarios). */
  scenario?: string;
  target: string;
  load: string;
  generator: 'grpc-js' | 'h2load';
  offeredRps?: number;
  concurrency?: number;
  achievedRps: number;
  latency: LatencySummary;
  sendLag?: LatencySummary;
  latencyFromSend?: LatencySummary;
  errors: Record<string, number>;
  errorSamples?: Record<string, string>;
  note?: string;
}

interface Files {
  requests: string;
  body: string;
  h2log: string;
}

/** A scenario made ready to run: its config, mix and encoded request files. */
interface ScenarioRun {
  readonly name: string;
  readonly description: string;
  readonly prepared: PreparedScenario;
  readonly workDir: string;
  readonly files: Files;
}

interface TargetSpec {
  label: string;
  kind: 'passgate' | 'noop' | 'raw-h2';
  /** Config, mix and request files this target is driven with (the floor uses the first scenario's requests). */
  run: ScenarioRun;
  audit?: boolean;
  /** Checkout the service runs from (default: this one). */
  root?: string;
  /** server.transport of the service / the no-op server's transport (default h2 for Passgate, grpc-js for the floor). */
  transport?: 'h2' | 'grpc-js';
  /** fds.redis.autoPipelining, for scenarios with a Redis FDS section (default: the service's, on). */
  autoPipelining?: boolean;
  /** Which rows to run. */
  rates: number[];
  closed: boolean;
  h2load: boolean;
}

async function startTarget(spec: TargetSpec, opts: Options, extraNodeArgs: string[] = []): Promise<{ proc: Spawned; port: number }> {
  const { prepared, workDir, name } = spec.run;
  const port = await freePort();
  if (spec.kind === 'noop' || spec.kind === 'raw-h2') {
    const file = spec.kind === 'noop' ? 'noop-server.ts' : 'raw-h2-server.ts';
    const proc = spawnProcess(spec.label, process.execPath, [...extraNodeArgs, '--import', 'tsx', join(HERE, file), '--port', String(port), '--transport', spec.transport ?? 'grpc-js'], { cwd: ROOT });
    await waitForPort(proc, port);
    if (PIN.enabled) pinToCpu(proc.child.pid!, PIN.serverCpu);
    return { proc, port };
  }
  const knobs: ServiceKnobs = { grpcPort: port, adminPort: await freePort(), audit: spec.audit ?? false, level: spec.audit ? 'info' : 'warn', ...(spec.transport ? { transport: spec.transport } : {}) };
  const configFile = join(workDir, `passgate-${spec.audit ? 'audit' : 'noaudit'}${spec.root ? '-baseline' : ''}${spec.transport ? `-${spec.transport}` : ''}${spec.autoPipelining === false ? '-no-ap' : ''}.yaml`);
  // A copy: the scenario's config shares nested objects between calls, and the per-target edits below must not leak
  // into the next target's file (they did: the autoPipelining-off target's setting and key prefix reached the others).
  const config = structuredClone(prepared.config(knobs));
  const redis = (config['fds'] as { redis?: Record<string, unknown> } | undefined)?.redis;
  if (spec.autoPipelining !== undefined && redis) redis['autoPipelining'] = spec.autoPipelining;
  // Each target counts in its own keys: one target's traffic must not fill another's FDS windows.
  if (redis && typeof redis['keyPrefix'] === 'string') redis['keyPrefix'] = `${redis['keyPrefix']}${basename(configFile, '.yaml')}:`;
  writeFileSync(configFile, `# generated by bench/check/run.ts (scenario ${name})\n${stringify(config)}`);
  const root = spec.root ?? ROOT;
  const distMain = join(root, 'dist/ext-authz/src/main.js');
  if (opts.dist && !existsSync(distMain)) throw new Error(`--dist: ${distMain} does not exist; run \`npm run build:ts\` or drop --dist`);
  const entry = opts.dist ? [distMain] : ['--import', 'tsx', join(root, 'ext-authz/src/main.ts')];
  // With audit on, stdout is /dev/null: audit lines are written and discarded (the production default minus a log shipper).
  // Otherwise (level warn) stdout is kept, so warnings and errors during the run can be reported.
  const proc = spawnProcess(`${spec.label} [${name}]`, process.execPath, [...extraNodeArgs, ...entry, '--config', configFile], {
    cwd: root,
    env: { ...process.env, ...prepared.env },
    stdout: spec.audit ? 'ignore' : 'capture',
  });
  await waitForPort(proc, port);
  if (PIN.enabled) pinToCpu(proc.child.pid!, PIN.serverCpu);
  return { proc, port };
}

/** Warnings the service logged during the run (level warn, audit off), reported under the table. */
const serviceLogs: string[] = [];

interface LiveTarget {
  readonly spec: TargetSpec;
  readonly proc: Spawned;
  readonly port: number;
}

/**
 * All targets run side by side (an idle server costs nothing) and each row is
 * measured on every target back to back, so a burst of background load on
 * this shared machine hits every scenario and the floor alike instead of
 * skewing the ratios.
 */
/** Error counts of several rounds, added up by kind. */
function sumErrors(list: ReadonlyArray<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of list) for (const [k, v] of Object.entries(e)) out[k] = (out[k] ?? 0) + v;
  return out;
}

async function measureAll(specs: readonly TargetSpec[], gen: LoadGen, opts: Options, h2: boolean): Promise<Row[]> {
  const live: LiveTarget[] = [];
  const rows: Row[] = [];
  const common = (t: LiveTarget) => ({ target: `127.0.0.1:${t.port}`, warmupMs: opts.warmupMs, durationMs: opts.durationMs, deadlineMs: 1000, requestsFile: t.spec.run.files.requests });
  const scenarioOf = (t: LiveTarget) => (t.spec.kind === 'passgate' ? t.spec.run.name : undefined);
  const name = (t: LiveTarget) => (t.spec.kind === 'passgate' ? `${t.spec.label} [${t.spec.run.name}]` : t.spec.label);
  const run = async (t: LiveTarget, cmd: Omit<RunCommand, 'id'>): Promise<RunResult> => {
    const r = await gen.run(cmd);
    if (r.error) throw new Error(`load generator against ${name(t)}: ${r.error}`);
    return r;
  };
  try {
    for (const spec of specs) {
      live.push({ spec, ...(await startTarget(spec, opts)) });
      const t = live[live.length - 1]!;
      if (spec.kind === 'passgate') {
        const { mix } = spec.run.prepared;
        const problems = await verifyMix(t.port, mix);
        if (problems.length > 0) throw new Error(`${name(t)} answered the request mix wrongly; fix the scenario or the service:\n  ${problems.join('\n  ')}`);
        process.stderr.write(`  ${name(t)}: all ${mix.length} mix entries got their expected decision\n`);
      }
      // JIT warm-up of the whole mix at full speed (and, for the mTLS scenarios, every certificate into the cache);
      // each row then has its own warm-up at its own load.
      process.stderr.write(`  ${name(t)}: warming up ...\n`);
      await run(t, { ...common(t), mode: 'closed', concurrency: opts.concurrency, warmupMs: 0, durationMs: Math.max(1000, opts.warmupMs) });
    }
    for (const rate of opts.rates) {
      for (const t of live.filter((l) => l.spec.rates.includes(rate))) {
        process.stderr.write(`  ${name(t)}: open loop ${rate} rps ...\n`);
        const r = await run(t, { ...common(t), mode: 'open', rate });
        rows.push({ scenario: scenarioOf(t), target: t.spec.label, load: `${rate} rps`, generator: 'grpc-js', offeredRps: rate, achievedRps: r.achievedRps, latency: r.latency, sendLag: r.sendLag, latencyFromSend: r.latencyFromSend, errors: r.errors, errorSamples: r.errorSamples });
      }
    }
    for (const t of live.filter((l) => l.spec.closed)) {
      process.stderr.write(`  ${name(t)}: closed loop, ${opts.concurrency} in flight ...\n`);
      const r = await run(t, { ...common(t), mode: 'closed', concurrency: opts.concurrency });
      rows.push({ scenario: scenarioOf(t), target: t.spec.label, load: `max (${opts.concurrency} in flight)`, generator: 'grpc-js', concurrency: opts.concurrency, achievedRps: r.achievedRps, latency: r.latency, errors: r.errors, errorSamples: r.errorSamples });
    }
    for (const t of live) gen.close(`127.0.0.1:${t.port}`);
    if (h2) {
      // On a shared (virtual) machine one round of a few seconds can be 30 % off; with --h2load-rounds each
      // target is measured several times, the order alternating, and the row is the median round.
      const targets = live.filter((l) => l.spec.h2load);
      const results = new Map<LiveTarget, H2Result[]>(targets.map((t) => [t, []]));
      for (let round = 0; round < opts.h2loadRounds; round++) {
        for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
          process.stderr.write(`  ${name(t)}: h2load, ${opts.concurrency} streams${opts.h2loadRounds > 1 ? ` (round ${round + 1}/${opts.h2loadRounds})` : ''} ...\n`);
          results.get(t)!.push(runH2load(t.port, t.spec.run.files.body, t.spec.run.files.h2log, opts));
        }
      }
      for (const t of targets) {
        const all = results.get(t)!;
        const r = [...all].sort((x, y) => x.achievedRps - y.achievedRps)[Math.floor(all.length / 2)]!;
        const rounds = all.length > 1 ? `; rounds ${all.map((x) => x.achievedRps.toFixed(0)).join(', ')}` : '';
        rows.push({ scenario: scenarioOf(t), target: t.spec.label, load: `max (${opts.concurrency} streams)`, generator: 'h2load', concurrency: opts.concurrency, achievedRps: r.achievedRps, latency: r.latency, errors: sumErrors(all.map((x) => x.errors)), note: `one request: "${t.spec.run.prepared.h2loadEntry}"${rounds}` });
      }
    }
  } finally {
    await Promise.all(live.map((t) => t.proc.stop()));
    for (const t of live) {
      if (t.spec.kind === 'passgate' && !t.spec.audit && t.proc.stdoutLines() > 0) {
        serviceLogs.push(`${name(t)} logged ${t.proc.stdoutLines()} line(s) at warn or above; last ones:\n${t.proc.stdoutTail().split('\n').slice(-3).join('\n')}`);
      }
    }
  }
  // Table order: by target (as defined: the floor, then each scenario with its +audit), rows in the order they were defined.
  const order = (r: Row) => specs.findIndex((s) => s.label === r.target && (s.kind !== 'passgate' || s.run.name === r.scenario));
  return rows.map((r, i) => ({ r, i })).sort((x, y) => order(x.r) - order(y.r) || x.i - y.i).map((x) => x.r);
}

async function profileService(run: ScenarioRun, gen: LoadGen, opts: Options): Promise<ProfileSummary | undefined> {
  const dir = join(run.workDir, 'cpuprof');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const spec: TargetSpec = { label: 'passgate (profiled)', kind: 'passgate', run, audit: false, rates: [], closed: true, h2load: false };
  const { proc, port } = await startTarget(spec, opts, ['--cpu-prof', '--cpu-prof-dir', dir]);
  // Every mix entry once first (every pooled certificate decoded, every Passport signed), as the measured targets get.
  const problems = await verifyMix(port, run.prepared.mix);
  if (problems.length > 0) process.stderr.write(`  profiled passgate: ${problems.length} mix entries got another decision, e.g. ${problems[0]}\n`);
  process.stderr.write('  profiling passgate under closed-loop max load ...\n');
  // Long enough for the whole mix (every pooled certificate, every Passport) to be cached: the profile shows the steady state.
  const warmupMs = Math.max(4000, opts.warmupMs);
  const durationMs = Math.max(5000, opts.durationMs);
  let loadStart = 0;
  let loadEnd = 0;
  try {
    loadStart = performance.now() + warmupMs;
    if (opts.h2load && h2loadVersion()) {
      // h2load drives the profile where it runs: the grpc-js generator saturates its own core first, and the profile
      // then shows an idle server rather than where its time goes.
      process.stderr.write('  (load from h2load, one request body)\n');
      runH2load(port, run.files.body, run.files.h2log, { ...opts, warmupMs, durationMs });
    } else {
      await gen.run({ target: `127.0.0.1:${port}`, mode: 'closed', concurrency: opts.concurrency, warmupMs, durationMs, deadlineMs: 1000, requestsFile: run.files.requests });
      gen.close(`127.0.0.1:${port}`);
    }
    loadEnd = performance.now();
  } finally {
    await proc.stop(15_000); // the profile is written on exit
  }
  const exitedAt = performance.now();
  // The tsx loader runs on its own thread and writes a second, small profile: take the main thread's (largest).
  const file = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort((a, b) => statSync(join(dir, b)).size - statSync(join(dir, a)).size)[0];
  if (!file) {
    process.stderr.write('  no .cpuprofile was written (did the service exit cleanly?)\n');
    return undefined;
  }
  // Startup (module loading, config compile) is excluded: only samples from the measured load window count.
  return summarizeProfile(join(dir, file), ROOT, ['ext-authz/', 'dist/ext-authz/'], 15, { fromEndMs: exitedAt - loadStart, toEndMs: exitedAt - loadEnd });
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

function errorsText(e: Record<string, number>): string {
  const parts = Object.entries(e).map(([k, v]) => `${v} ${k}`);
  return parts.length === 0 ? '0' : parts.join(', ');
}

const NOOP = 'no-op floor';
/** The raw node:http2 server with a fixed answer: the Node ceiling. */
const RAW = 'raw http2 ceiling';
const NOOP_H2 = 'no-op on h2 transport';
const sameRow = (a: Row, b: Row) => a.load === b.load && a.generator === b.generator;

function ratio(ours: Row, base: Row | undefined): string {
  return base && base !== ours && base.achievedRps > 0 ? (ours.achievedRps / base.achievedRps).toFixed(2) : '';
}

function table(rows: Row[], multi: boolean): string {
  const hasCore = rows.some((r) => r.scenario === 'core');
  // "vs core": the core scenario's row with the same target (passgate / +audit), load and generator.
  const coreOf = (r: Row) => (r.scenario === undefined || r.scenario === 'core' ? undefined : rows.find((c) => c.scenario === 'core' && c.target === r.target && sameRow(c, r)));
  const floorOf = (r: Row) => (r.target === NOOP ? undefined : rows.find((f) => f.target === NOOP && sameRow(f, r)));
  const ceilingOf = (r: Row) => (r.target === RAW ? undefined : rows.find((f) => f.target === RAW && sameRow(f, r)));
  const hasRaw = rows.some((r) => r.target === RAW);
  return markdownTable(
    [...(multi ? ['scenario'] : []), 'target', 'load', 'generator', 'achieved rps', ...(multi && hasCore ? ['vs core'] : []), 'vs no-op', ...(hasRaw ? ['vs raw h2'] : []), 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'errors', 'send lag p99 ms', 'p99 from send ms'],
    rows.map((r) => [
      ...(multi ? [r.scenario ?? '(all)'] : []),
      r.target,
      r.load,
      r.generator,
      r.achievedRps.toFixed(0),
      ...(multi && hasCore ? [ratio(r, coreOf(r))] : []),
      ratio(r, floorOf(r)),
      ...(hasRaw ? [ratio(r, ceilingOf(r))] : []),
      fmtMs(r.latency.p50),
      fmtMs(r.latency.p90),
      fmtMs(r.latency.p99),
      fmtMs(r.latency.p999),
      fmtMs(r.latency.max),
      errorsText(r.errors),
      r.sendLag ? fmtMs(r.sendLag.p99) : '',
      r.latencyFromSend ? fmtMs(r.latencyFromSend.p99) : '',
    ]),
  );
}

interface Goals {
  p99At1000: { value: number; goal: number; met: boolean } | null;
  throughputRatio: Array<{ generator: string; ours: number; floor: number; ratio: number; goal: number; met: boolean }>;
  /** Against the raw node:http2 ceiling (same generator, max load). */
  ceilingRatio: Array<{ generator: string; ours: number; ceiling: number; ratio: number; goal: number; met: boolean }>;
}

/** Goal lines for one scenario (its passgate rows against the shared floor). */
function goalsFor(scenario: string, rows: Row[], out: string[], prefix: string): Goals {
  const mine = (r: Row) => r.scenario === scenario;
  const goalRow = rows.find((r) => mine(r) && r.target === 'passgate' && r.load === `${GOAL_RATE} rps` && r.generator === 'grpc-js');
  const ratios = (['grpc-js', 'h2load'] as const).flatMap((g) => {
    const ours = rows.find((r) => mine(r) && r.target === 'passgate' && r.generator === g && r.load.startsWith('max'));
    const floor = rows.find((r) => r.target === NOOP && r.generator === g && r.load.startsWith('max'));
    return ours && floor ? [{ generator: g, ours: ours.achievedRps, floor: floor.achievedRps, ratio: ours.achievedRps / floor.achievedRps }] : [];
  });
  const ceilings = (['grpc-js', 'h2load'] as const).flatMap((g) => {
    const ours = rows.find((r) => mine(r) && r.target === 'passgate' && r.generator === g && r.load.startsWith('max'));
    const ceiling = rows.find((r) => r.target === RAW && r.generator === g && r.load.startsWith('max'));
    return ours && ceiling ? [{ generator: g, ours: ours.achievedRps, ceiling: ceiling.achievedRps, ratio: ours.achievedRps / ceiling.achievedRps }] : [];
  });
  const goalRatio = scenario === 'full' ? GOAL_FULL_RATIO : GOAL_RATIO;
  const auditMax = rows.find((r) => mine(r) && r.target === 'passgate +audit' && r.load.startsWith('max'));
  const plainMax = rows.find((r) => mine(r) && r.target === 'passgate' && r.generator === 'grpc-js' && r.load.startsWith('max'));
  if (goalRow) {
    const met = goalRow.latency.p99 < GOAL_P99_MS;
    const fromSend = goalRow.latencyFromSend ? `; ${fmtMs(goalRow.latencyFromSend.p99)} ms counted from the actual send, generator send lag p99 ${fmtMs(goalRow.sendLag?.p99 ?? NaN)} ms` : '';
    out.push(`- ${prefix}p99 at ${GOAL_RATE} rps: **${fmtMs(goalRow.latency.p99)} ms** from the scheduled send (goal < ${GOAL_P99_MS} ms; OPA-Envoy published 3.0 ms there) → ${met ? 'MET' : 'MISSED'}${fromSend}`);
  }
  for (const r of ratios) {
    out.push(`- ${prefix}throughput vs no-op floor (${r.generator}): ${r.ours.toFixed(0)} / ${r.floor.toFixed(0)} rps = **${r.ratio.toFixed(2)}** (goal ≥ ${goalRatio}) → ${r.ratio >= goalRatio ? 'MET' : 'MISSED'}`);
  }
  for (const r of ceilings) {
    out.push(`- ${prefix}throughput vs raw http2 ceiling (${r.generator}): ${r.ours.toFixed(0)} / ${r.ceiling.toFixed(0)} rps = **${r.ratio.toFixed(2)}** (goal ≥ ${GOAL_CEILING_RATIO}) → ${r.ratio >= GOAL_CEILING_RATIO ? 'MET' : 'MISSED'}`);
  }
  const baseMax = rows.filter((r) => mine(r) && r.target === 'baseline' && r.load.startsWith('max'));
  for (const b of baseMax) {
    const ours = rows.find((r) => mine(r) && r.target === 'passgate' && sameRow(r, b));
    if (ours) out.push(`- ${prefix}this checkout vs baseline (${b.generator}, max): ${ours.achievedRps.toFixed(0)} / ${b.achievedRps.toFixed(0)} rps = **${(ours.achievedRps / b.achievedRps).toFixed(2)}**`);
  }
  if (auditMax && plainMax) out.push(`- ${prefix}audit logging on: ${auditMax.achievedRps.toFixed(0)} vs ${plainMax.achievedRps.toFixed(0)} rps at max (grpc-js generator) = ${(auditMax.achievedRps / plainMax.achievedRps).toFixed(2)} of audit-off throughput`);
  return {
    p99At1000: goalRow ? { value: goalRow.latency.p99, goal: GOAL_P99_MS, met: goalRow.latency.p99 < GOAL_P99_MS } : null,
    throughputRatio: ratios.map((r) => ({ ...r, goal: goalRatio, met: r.ratio >= goalRatio })),
    ceilingRatio: ceilings.map((r) => ({ ...r, goal: GOAL_CEILING_RATIO, met: r.ratio >= GOAL_CEILING_RATIO })),
  };
}

/** Prepares one scenario and writes its encoded requests (mix bodies + weighted order) and h2load body. */
async function prepareRun(name: string): Promise<ScenarioRun> {
  const scenario = SCENARIOS[name]!;
  const workDir = join(OUT, 'check', scenario.name);
  mkdirSync(workDir, { recursive: true });
  const prepared = await scenario.prepare({ workDir });
  const files: Files = { requests: join(workDir, 'requests.json'), body: join(workDir, 'h2load-body.bin'), h2log: join(workDir, 'h2load.log') };
  const bodies = prepared.mix.map((m) => encode(m.request));
  writeFileSync(files.requests, JSON.stringify({ bodies: bodies.map((b) => b.toString('base64')), sequence: weightedSequence(prepared.mix) }));
  const h2index = prepared.mix.findIndex((m) => m.name === prepared.h2loadEntry);
  if (h2index === -1) {
    await prepared.teardown?.();
    throw new Error(`scenario ${scenario.name}: h2loadEntry "${prepared.h2loadEntry}" names no mix entry`);
  }
  const h2body = bodies[h2index]!;
  const frame = Buffer.alloc(5 + h2body.length);
  frame.writeUInt8(0, 0); // not compressed
  frame.writeUInt32BE(h2body.length, 1);
  h2body.copy(frame, 5);
  writeFileSync(files.body, frame);
  return { name: scenario.name, description: scenario.description, prepared, workDir, files };
}

/** A throw-away redis-server (nothing on disk) pinned to `cpu`. */
async function startPinnedRedis(cpu: number): Promise<{ url: string; stop(): void }> {
  const port = await freePort();
  const proc = spawnProcess('redis-server (bench)', 'taskset', ['-c', String(cpu), 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { cwd: ROOT });
  await waitForPort(proc, port);
  return { url: `redis://127.0.0.1:${port}`, stop: () => proc.child.kill('SIGKILL') };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  PIN.enabled = opts.pin;
  const multi = opts.scenarios.length > 1;
  const startedAt = new Date();
  const t0 = performance.now();

  const runs: ScenarioRun[] = [];
  const loadBefore = loadavg()[0]!;
  const h2version = opts.h2load ? h2loadVersion() : undefined;
  const h2 = h2version !== undefined;
  const gen = new LoadGen();
  const rows: Row[] = [];
  let profile: ProfileSummary | undefined;
  let clusterRow: ClusterRow | undefined;
  // With --pin, FDS scenarios get a redis-server of their own on the generator's CPU, so Redis never takes
  // the service's core (the system one floats between both). BENCH_REDIS_URL, when set, wins.
  const ownRedis = opts.pin && process.env['BENCH_REDIS_URL'] === undefined ? await startPinnedRedis(PIN.generatorCpu) : undefined;
  if (ownRedis) {
    process.env['BENCH_REDIS_URL'] = ownRedis.url;
    process.stderr.write(`  redis: own redis-server ${ownRedis.url} on CPU ${PIN.generatorCpu}\n`);
  }
  try {
    for (const name of opts.scenarios) {
      runs.push(await prepareRun(name));
      process.stderr.write(`bench:check scenario "${name}": ${SCENARIOS[name]!.description}\n`);
    }
    process.stderr.write(h2 ? `  h2load: ${h2version}\n` : `  h2load not available${opts.h2load ? ' (apt-get install -y nghttp2-client)' : ' (--no-h2load)'}: max-throughput rows use the grpc-js generator only\n`);
    // The floor replays the core requests when core runs (else the first scenario's): what a Check costs with no work at all.
    const floorRun = runs.find((r) => r.name === 'core') ?? runs[0]!;
    const auditRates = opts.rates.includes(GOAL_RATE) ? [GOAL_RATE] : [];
    // The raw node:http2 ceiling answers a fixed OK without decoding: only its max rows say anything.
    const targets: TargetSpec[] = [
      { label: NOOP, kind: 'noop', run: floorRun, rates: opts.rates, closed: true, h2load: true },
      { label: RAW, kind: 'raw-h2', run: floorRun, rates: [], closed: true, h2load: true },
      // Issue 18: the same no-op on Passgate's own transport (src/transport), between the two floors.
      { label: NOOP_H2, kind: 'noop', transport: 'h2', run: floorRun, rates: [], closed: true, h2load: true },
    ];
    for (const run of runs) {
      targets.push({ label: 'passgate', kind: 'passgate', run, audit: false, rates: opts.rates, closed: true, h2load: true });
      // The same service on the transport it replaced (server.transport: grpc-js): the transport's share in one run.
      targets.push({ label: 'passgate on grpc-js', kind: 'passgate', transport: 'grpc-js', run, audit: false, rates: [], closed: true, h2load: true });
      // Where the chain calls Redis: the same service with fds.redis.autoPipelining off (on is the default).
      if (run.name !== 'core' && run.name !== 'mtls' && run.name !== 'passport') {
        targets.push({ label: 'passgate, autoPipelining off', kind: 'passgate', autoPipelining: false, run, audit: false, rates: [], closed: true, h2load: true });
      }
      if (opts.baseline) targets.push({ label: 'baseline', kind: 'passgate', run, audit: false, root: opts.baseline, rates: [], closed: true, h2load: true });
      if (opts.audit) targets.push({ label: 'passgate +audit', kind: 'passgate', run, audit: true, rates: auditRates, closed: true, h2load: false });
    }
    // The floor first in the table, then each scenario in the order asked for.
    rows.push(...(await measureAll(targets, gen, opts, h2)));
    // ---- Redis Cluster row (issue 18, cluster part): bench/check/cluster-row.ts adds its row(s) here, after the
    // ---- single-node targets, so the table shows FDS on 3 masters (commands per node per Check) beside them.
    if (opts.cluster) {
      process.stderr.write('  FDS Redis Cluster row: 1 node against 3 local masters ...\n');
      // --quick shortens it as it shortens the rows above.
      clusterRow = await fdsClusterRow(opts.durationMs < 6000 ? { sequential: 500, burst: 3000, users: 3000 } : {});
    }
    if (opts.profile) profile = await profileService(runs[0]!, gen, opts);
  } finally {
    gen.stop();
    // Teardown deletes the scenario's keys, so it runs while the own Redis still does.
    for (const r of runs) {
      try {
        await r.prepared.teardown?.();
      } catch (err) {
        process.stderr.write(`  teardown of scenario ${r.name} failed: ${(err as Error).message}\n`);
      }
    }
    ownRedis?.stop();
  }

  const names = runs.map((r) => r.name);
  const out: string[] = [];
  out.push(`## bench:check — scenario${multi ? 's' : ''} ${names.map((n) => `\`${n}\``).join(', ')}`, '');
  for (const r of runs) {
    const p = r.prepared;
    out.push(`${multi ? `**${r.name}**: ` : ''}${r.description}.`);
    const weights = p.mix.length <= 30 ? ` Mix weights: ${p.mix.map((m) => `${m.name} ${m.weight}`).join('; ')}.` : ` Mix: ${p.mix.length} entries (full list with weights and expected decisions in .bench-out/check.json).`;
    out.push(`Facts: ${Object.entries(p.facts).map(([k, v]) => `${k} ${v}`).join(', ')}.${weights}`, '');
  }
  out.push(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. Each row: ${opts.warmupMs / 1000} s warm-up, ${opts.durationMs / 1000} s measured. Service: ${opts.dist ? 'dist build' : 'node --import tsx'}, logging level warn + audit off unless "+audit" (level info, audit to /dev/null). Targets run side by side (one Passgate process per scenario and one shared no-op floor) and each row is measured on all of them back to back. Open loop latency is from the scheduled send time; "send lag" shows how late the generator itself was, and "p99 from send" leaves that lag out (a sanity check on a busy machine, not the headline figure).`, '');
  out.push(`"vs no-op" is achieved throughput against the floor's row with the same load and generator${multi && names.includes('core') ? '; "vs core" against the core scenario\'s row with the same target, load and generator' : ''}. Only the max rows say something about cost; an open-loop row reads 1.00 when the target kept up with the offered rate.`, '');
  out.push(table(rows, multi), '');
  for (const r of rows) {
    for (const [code, msg] of Object.entries(r.errorSamples ?? {})) out.push(`- ${r.scenario ? `${r.scenario} ` : ''}${r.target}, ${r.load}: ${code} e.g. "${msg}"`);
  }
  if (rows.some((r) => Object.keys(r.errorSamples ?? {}).length > 0)) out.push('');
  for (const l of serviceLogs) out.push('```', l, '```', '');
  if (!h2) out.push(opts.h2load ? 'h2load was not available (apt-get install -y nghttp2-client), so max-throughput rows come from the grpc-js generator only.' : 'h2load rows skipped (--no-h2load).', '');
  else {
    out.push(`h2load rows replay one pre-encoded request over 1 connection (${runs.map((r) => `${multi ? `${r.name}: ` : ''}"${r.prepared.h2loadEntry}"`).join('; ')}${multi ? `; the floor: the ${names.includes('core') ? 'core' : runs[0]!.name} one` : ''}); grpc-js rows cycle the whole mix over 1 connection.`);
    if (multi && names.includes('core') && names.length > 1) out.push('For the mTLS-based scenarios the h2load request is a partner request through their whole identity chain (one certificate, cached), so their h2load "vs core" compares that request with core\'s "api users" one.');
    const rounds = rows.filter((r) => r.generator === 'h2load' && r.note?.includes('; rounds '));
    if (rounds.length > 0) {
      out.push('', `h2load rows are the median of ${opts.h2loadRounds} rounds (rps of each round, in the order run):`);
      for (const r of rounds) out.push(`- ${r.scenario ? `${r.scenario} ` : ''}${r.target}: ${r.note!.split('; rounds ')[1]}`);
    }
    out.push('');
  }
  if (clusterRow) out.push('### FDS on a Redis Cluster (3 masters) against one node', '', clusterRow.markdown, '');
  out.push('### Goals', '');
  const goalsByScenario: Record<string, Goals> = {};
  for (const n of names) goalsByScenario[n] = goalsFor(n, rows, out, multi ? `${n}: ` : '');
  out.push('- the grpc-js generator shares 2 cores with the server; at max load it is often the limit for the no-op floor, so the h2load ratio is the stricter one.');
  if (profile) {
    out.push('', `### CPU profile of passgate at max load (${(profile.totalMs / 1000).toFixed(1)} s sampled, idle ${((100 * profile.idleMs) / profile.totalMs).toFixed(0)}%, GC ${fmtMs(profile.gcMs)} ms)`, '');
    const busy = profile.totalMs - profile.idleMs;
    out.push(`Busy time by origin: ours ${((100 * profile.byOrigin.ours) / busy).toFixed(1)}%, dependencies ${((100 * profile.byOrigin.dependencies) / busy).toFixed(1)}%, node internals/native ${((100 * profile.byOrigin.node) / busy).toFixed(1)}%, other ${((100 * profile.byOrigin.other) / busy).toFixed(1)}%.`, '');
    const pt = (rs: typeof profile.top) =>
      markdownTable(['self ms', 'self % of busy', 'inclusive % of busy', 'function', 'where'], rs.map((r) => [r.selfMs.toFixed(0), `${(100 * r.share).toFixed(1)}%`, `${(100 * r.inclusiveShare).toFixed(1)}%`, r.fn, r.where]));
    out.push('Top self time overall:', '', pt(profile.top), '', 'Top self time in ext-authz/:', '', pt(profile.topOurs), '', 'ext-authz/ functions by inclusive time (which pipeline parts dominate):', '', pt(profile.topOursInclusive.slice(0, 10)));
  }
  const elapsed = (performance.now() - t0) / 1000;
  const loadAfter = loadavg()[0]!;
  // "after" includes our own service and generator (about 2 runnable processes).
  if (loadBefore > 1 || loadAfter > 3.5) {
    out.push('', `**Warning:** the machine was busy (1-min load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after, on ${cpus().length} cores); other processes competed with the service and the generator, so tail latencies are inflated. Re-run on an idle machine for figures.`);
  }
  out.push('', `Total bench time ${elapsed.toFixed(0)} s. Raw results: .bench-out/check.json`);
  process.stdout.write(`${out.join('\n')}\n`);

  writeFileSync(
    join(OUT, 'check.json'),
    JSON.stringify(
      {
        // `scenario`, `facts`, `mix` and `goals` describe the first scenario (the shape single-scenario readers know); `scenarios` has them all.
        scenario: names[0],
        startedAt: startedAt.toISOString(),
        elapsedSeconds: elapsed,
        loadAverage: { before: loadBefore, after: loadAfter },
        machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, h2load: h2version ?? null },
        settings: opts,
        facts: runs[0]!.prepared.facts,
        mix: runs[0]!.prepared.mix.map((m) => ({ name: m.name, weight: m.weight, expect: m.expect })),
        scenarios: runs.map((r) => ({
          name: r.name,
          description: r.description,
          facts: r.prepared.facts,
          h2loadEntry: r.prepared.h2loadEntry,
          mix: r.prepared.mix.map((m) => ({ name: m.name, weight: m.weight, expect: m.expect })),
          goals: goalsByScenario[r.name],
        })),
        rows,
        goals: goalsByScenario[names[0]!],
        profile: profile ?? null,
        cluster: clusterRow?.targets ?? null,
      },
      null,
      2,
    ),
  );
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench:check failed: ${err.message}\n`);
    process.exit(1);
  },
);
