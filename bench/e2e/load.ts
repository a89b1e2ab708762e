/**
 * Load generator for bench:e2e, run in its own process so it does not share
 * the event loop with the gateway: `connections` keep-alive clients each send
 * requests back to back for `seconds`. Prints one JSON line of results.
 * argv[2] = JSON { url, seconds, connections, ca?, cert?, key? }
 */
import http from 'node:http';
import https from 'node:https';
import { HttpLoad } from '../common/http-load.js';

interface Job { url: string; seconds: number; connections: number; ca?: string; cert?: string; key?: string }
const job = JSON.parse(process.argv[2] ?? '{}') as Job;
const u = new URL(job.url);
const isTls = u.protocol === 'https:';
const agent = isTls
  ? new https.Agent({ keepAlive: true, maxSockets: job.connections, ca: job.ca, cert: job.cert, key: job.key, servername: 'localhost' })
  : new http.Agent({ keepAlive: true, maxSockets: job.connections });
const lib = isTls ? https : http;

const load = new HttpLoad(lib, agent);

function once(): Promise<void> {
  return load.once({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'GET' });
}

async function loop(until: number): Promise<void> {
  while (Date.now() < until) await once();
}

// Warm up connections (TLS handshakes) before measuring.
await Promise.all(Array.from({ length: job.connections }, () => once()));
load.reset();
const start = Date.now();
const until = start + job.seconds * 1000;
await Promise.all(Array.from({ length: job.connections }, () => loop(until)));
const elapsed = (Date.now() - start) / 1000;
const s = load.latencies.summary();
process.stdout.write(`${JSON.stringify({ requests: s.count, rps: s.count / elapsed, p50: s.p50, p90: s.p90, p99: s.p99, max: s.max, statuses: load.statuses, errors: load.errors })}\n`);
agent.destroy();
