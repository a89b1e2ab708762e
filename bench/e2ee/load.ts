/**
 * Load generator for bench:e2ee, in its own process (it must not share the
 * gateway's event loop): `connections` keep-alive clients POST back to back
 * for `seconds`. `sealed` mode pre-seals a pool of envelopes with the
 * reference app client before the clock starts (each is single use), so
 * the client's own sealing cost is not in the figures.
 * argv[2] = JSON { url, seconds, connections, bodyBytes, mode: plain|sealed, keysUrl?, senderJwk?, senderId?, pool? }
 * Prints one JSON line.
 */
import http from 'node:http';
import { E2eeClient } from '../../ext-authz/src/e2ee/client.js';
import { HttpLoad } from '../common/http-load.js';

interface Job {
  url: string;
  seconds: number;
  connections: number;
  bodyBytes: number;
  mode: 'plain' | 'sealed';
  keysUrl?: string;
  senderJwk?: { kty: string; crv: string; d: string; x: string };
  senderId?: string;
  pool?: number;
}
const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const u = new URL(job.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: job.connections });
const json = Buffer.from(JSON.stringify({ pad: 'x'.repeat(Math.max(0, job.bodyBytes - 10)) }));

let bodies: Buffer[] = [];
let contentType = 'application/json';
if (job.mode === 'sealed') {
  const keys = new Uint8Array(await (await fetch(job.keysUrl!)).arrayBuffer());
  const sender = await E2eeClient.senderFromJwk(job.senderId!, job.senderJwk!);
  const client = await E2eeClient.fromKeyConfigs(keys, { sender });
  for (let i = 0; i < (job.pool ?? 2000); i++) bodies.push(Buffer.from((await client.seal('application/json', json)).body));
  contentType = 'application/vnd.passgate.e2ee';
}
let next = 0;
const take = (): Buffer | undefined => (job.mode === 'plain' ? json : bodies[next++]);

const load = new HttpLoad(http, agent);
let exhausted = false;

function once(): Promise<void> {
  const body = take();
  if (body === undefined) {
    exhausted = true;
    return Promise.resolve();
  }
  return load.once({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': contentType, 'content-length': body.length } }, body);
}

async function loop(until: number): Promise<void> {
  while (Date.now() < until && !exhausted) await once();
}

await Promise.all(Array.from({ length: job.connections }, () => once()));
load.reset();
const start = Date.now();
await Promise.all(Array.from({ length: job.connections }, () => loop(start + job.seconds * 1000)));
const elapsed = (Date.now() - start) / 1000;
const s = load.latencies.summary();
process.stdout.write(`${JSON.stringify({ requests: s.count, rps: s.count / elapsed, p50: s.p50, p99: s.p99, statuses: load.statuses, errors: load.errors, exhausted })}\n`);
agent.destroy();
