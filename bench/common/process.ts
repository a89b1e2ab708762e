/**
 * Process plumbing for benchmarks: free loopback ports, spawning the service
 * (or a baseline server) as its own process, waiting until it accepts
 * connections, and stopping it by pid (never by name).
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createConnection, createServer } from 'node:net';

/** A port the kernel considers free right now on 127.0.0.1 (small race window; fine for benchmarks). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('could not get a free port'))));
    });
  });
}

export interface Spawned {
  readonly child: ChildProcess;
  readonly name: string;
  /** Last few KB of stderr, for error messages. */
  stderrTail(): string;
  /** With stdout 'capture': the last few KB of stdout and how many lines it wrote. */
  stdoutTail(): string;
  stdoutLines(): number;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once exited. */
  stop(graceMs?: number): Promise<number | string>;
}

export interface SpawnOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Where the child's stdout goes: 'ignore' (default, i.e. /dev/null), 'inherit', or 'capture' (keep a tail). */
  readonly stdout?: 'ignore' | 'inherit' | 'capture';
}

export function spawnProcess(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): Spawned {
  const out = options.stdout ?? 'ignore';
  const stdio: StdioOptions = ['ignore', out === 'capture' ? 'pipe' : out, 'pipe'];
  const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio });
  let tail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-4096);
  });
  let outTail = '';
  let outLines = 0;
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    outTail = (outTail + chunk).slice(-8192);
    for (let i = chunk.indexOf('\n'); i !== -1; i = chunk.indexOf('\n', i + 1)) outLines++;
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => {
      tail += `\n${err.message}`;
      resolve('spawn-error');
    });
  });
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    name,
    exited,
    stderrTail: () => tail.trim(),
    stdoutTail: () => outTail.trim(),
    stdoutLines: () => outLines,
    async stop(graceMs = 5_000) {
      if (done) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!done) child.kill('SIGKILL');
      }, graceMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

function tryConnect(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** Waits until `port` accepts TCP connections; throws with the child's stderr if it exits or times out first. */
export async function waitForPort(proc: Spawned, port: number, timeoutMs = 30_000, host = '127.0.0.1'): Promise<void> {
  let exit: number | string | undefined;
  void proc.exited.then((code) => (exit = code));
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (exit !== undefined) throw new Error(`${proc.name} exited (${exit}) before listening on ${port}:\n${proc.stderrTail()}`);
    if (await tryConnect(port, host)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${proc.name} did not listen on ${host}:${port} within ${timeoutMs} ms:\n${proc.stderrTail()}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
