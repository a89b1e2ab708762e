/**
 * The load generator: a separate Node process (forked by run.ts, commands over
 * IPC) with a plain grpc-js client, so nothing of our server code sits on the
 * client side. Requests are pre-encoded once; calls send the bytes as-is and
 * keep responses as raw bytes, so the generator stays light.
 *
 * open:   a fixed timetable (request i is due at t0 + i/rate). A worker thread
 *         paces it with sub-millisecond sleeps (Node timers only have 1 ms
 *         resolution), and latency is measured from the *scheduled* time, so
 *         a stall in the server cannot hide its own queueing (no coordinated
 *         omission).
 * closed: N calls always in flight; latency from the actual send; gives the
 *         maximum throughput.
 */
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import { SampleBuffer } from '../common/stats.js';
import { CHECK_PATH, type RunCommand, type RunResult } from './protocol.js';

interface Workload {
  bodies: Buffer[];
  sequence: number[];
}

const identity = (b: Buffer) => b;
const clients = new Map<string, grpc.Client>();
const workloads = new Map<string, Workload>();

function clientFor(target: string): grpc.Client {
  let c = clients.get(target);
  if (!c) {
    c = new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
    clients.set(target, c);
  }
  return c;
}

function workloadFrom(file: string): Workload {
  let w = workloads.get(file);
  if (!w) {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { bodies: string[]; sequence: number[] };
    w = { bodies: raw.bodies.map((b) => Buffer.from(b, 'base64')), sequence: raw.sequence };
    workloads.set(file, w);
  }
  return w;
}

function waitReady(client: grpc.Client, ms: number): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + ms, (err) => (err ? reject(err) : resolve())));
}

/** First message seen per error code in this process, to say *why* calls failed. */
const errorSamples: Record<string, string> = {};

function errName(err: grpc.ServiceError): string {
  const name = grpc.status[err.code] ?? String(err.code);
  errorSamples[name] ??= err.details || err.message;
  return name;
}

async function closedLoop(cmd: RunCommand, client: grpc.Client, work: Workload): Promise<RunResult> {
  const concurrency = cmd.concurrency ?? 64;
  const samples = new SampleBuffer();
  const errors: Record<string, number> = {};
  const start = performance.now();
  const mStart = start + cmd.warmupMs;
  const mEnd = mStart + cmd.durationMs;
  let cursor = 0;
  let completedInWindow = 0;
  let active = 0;
  await new Promise<void>((resolve) => {
    const fire = () => {
      const body = work.bodies[work.sequence[cursor++ % work.sequence.length]!]!;
      const sent = performance.now();
      active++;
      client.makeUnaryRequest(CHECK_PATH, identity, identity, body, { deadline: Date.now() + cmd.deadlineMs }, (err) => {
        const end = performance.now();
        active--;
        if (end >= mStart && end <= mEnd) {
          if (err) errors[errName(err)] = (errors[errName(err)] ?? 0) + 1;
          else completedInWindow++;
        }
        if (!err && sent >= mStart && end <= mEnd) samples.push(end - sent);
        if (end < mEnd) fire();
        else if (active === 0) resolve();
      });
    };
    for (let i = 0; i < concurrency; i++) fire();
  });
  return {
    id: cmd.id,
    mode: 'closed',
    target: cmd.target,
    concurrency,
    durationMs: cmd.durationMs,
    measured: samples.length,
    errors,
    achievedRps: completedInWindow / (cmd.durationMs / 1000),
    latency: samples.summary(),
    errorSamples: { ...errorSamples },
  };
}

// Plain JS so the worker needs no TypeScript loader. Atomics.wait takes fractional ms.
const PACER = `
const { parentPort, workerData } = require('node:worker_threads');
const { t0, intervalMs, count } = workerData;
const cell = new Int32Array(new SharedArrayBuffer(4));
const now = () => performance.timeOrigin + performance.now();
let next = 0;
while (next < count) {
  const wait = t0 + next * intervalMs - now();
  if (wait > 0.01) Atomics.wait(cell, 0, 0, wait);
  const due = Math.min(count - 1, Math.floor((now() - t0) / intervalMs));
  if (due < next) continue;
  parentPort.postMessage(due);
  next = due + 1;
}
parentPort.postMessage(-1);
`;

async function openLoop(cmd: RunCommand, client: grpc.Client, work: Workload): Promise<RunResult> {
  const rate = cmd.rate ?? 1000;
  const intervalMs = 1000 / rate;
  const count = Math.round(((cmd.warmupMs + cmd.durationMs) / 1000) * rate);
  const samples = new SampleBuffer(Math.ceil((cmd.durationMs / 1000) * rate) + 16);
  const lags = new SampleBuffer(Math.ceil((cmd.durationMs / 1000) * rate) + 16);
  const fromSend = new SampleBuffer(Math.ceil((cmd.durationMs / 1000) * rate) + 16);
  const errors: Record<string, number> = {};
  const t0Rel = performance.now() + 20; // small lead so the first sends are on time
  const mStart = t0Rel + cmd.warmupMs;
  let outstanding = 0;
  let measuredDone = 0;
  let lastEnd = mStart;
  let cursor = 0;
  let pacingDone = false;
  let finish: () => void = () => {};
  const drained = new Promise<void>((r) => (finish = r));

  const send = (i: number) => {
    const scheduled = t0Rel + i * intervalMs;
    const body = work.bodies[work.sequence[cursor++ % work.sequence.length]!]!;
    const measured = scheduled >= mStart;
    const sent = performance.now();
    if (measured) lags.push(sent - scheduled);
    outstanding++;
    client.makeUnaryRequest(CHECK_PATH, identity, identity, body, { deadline: Date.now() + cmd.deadlineMs }, (err) => {
      const end = performance.now();
      outstanding--;
      if (measured) {
        if (err) errors[errName(err)] = (errors[errName(err)] ?? 0) + 1;
        else {
          samples.push(end - scheduled);
          fromSend.push(end - sent);
          measuredDone++;
          if (end > lastEnd) lastEnd = end;
        }
      }
      if (pacingDone && outstanding === 0) finish();
    });
  };

  const worker = new Worker(PACER, { eval: true, workerData: { t0: performance.timeOrigin + t0Rel, intervalMs, count } });
  let sentUpTo = -1;
  await new Promise<void>((resolve, reject) => {
    worker.on('message', (due: number) => {
      if (due === -1) return resolve();
      for (let i = sentUpTo + 1; i <= due; i++) send(i);
      sentUpTo = due;
    });
    worker.once('error', reject);
  });
  await worker.terminate();
  pacingDone = true;
  if (outstanding > 0) {
    // Late answers still count (that is the point of open loop), up to the deadline.
    await Promise.race([drained, new Promise((r) => setTimeout(r, cmd.deadlineMs + 1000))]);
    if (outstanding > 0) errors['NO_ANSWER'] = outstanding;
  }
  const span = Math.max(cmd.durationMs, lastEnd - mStart);
  return {
    id: cmd.id,
    mode: 'open',
    target: cmd.target,
    rate,
    durationMs: cmd.durationMs,
    measured: measuredDone,
    errors,
    achievedRps: measuredDone / (span / 1000),
    latency: samples.summary(),
    sendLag: lags.summary(),
    latencyFromSend: fromSend.summary(),
    errorSamples: { ...errorSamples },
  };
}

async function run(cmd: RunCommand): Promise<RunResult> {
  for (const k of Object.keys(errorSamples)) delete errorSamples[k];
  const client = clientFor(cmd.target);
  await waitReady(client, 10_000);
  const work = workloadFrom(cmd.requestsFile);
  return cmd.mode === 'open' ? openLoop(cmd, client, work) : closedLoop(cmd, client, work);
}

process.on('message', (msg: RunCommand | { type: 'close'; target: string }) => {
  if ('type' in msg) {
    clients.get(msg.target)?.close();
    clients.delete(msg.target);
    process.send?.({ type: 'closed' });
    return;
  }
  run(msg).then(
    (result) => process.send?.(result),
    (err: Error) =>
      process.send?.({ id: msg.id, error: `${err.message}`, mode: msg.mode, target: msg.target } satisfies Partial<RunResult>),
  );
});
process.on('disconnect', () => process.exit(0));
