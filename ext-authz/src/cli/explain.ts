/**
 * `passgate explain`: why a request gets the answer it gets, without
 * sending it. The config's capabilities are prepared as `serve` would (the
 * FDS store is connected to read blocks), then the Checker decides the
 * request as a dry run (check/explain.ts): nothing is written, counted or
 * audited. The request is given curl-like, or as a CheckRequest in JSON.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import { loadConfigFile } from '../config/load.js';
import { assemble } from '../server/assemble.js';
import { Checker } from '../check/checker.js';
import { formatExplanation, type Explanation } from '../check/explain.js';
import { Metrics } from '../observability/metrics.js';
import { checkRequestForUrl } from '../proto/check-request.js';
import type { CheckRequest } from '../proto/types.js';
import { formatXfccElement, urlEncodePem } from '../identity/xfcc.js';
import { fdsCapability } from '../fds/capability.js';

export const EXPLAIN_USAGE = `usage: passgate explain --config FILE [curl-like request | --check-request FILE] [--json]

request (curl-like):
  URL                 https://host[:port]/path?query (the port is the destination port gateways select by)
  -X, --request M     method (default GET)
  -H, --header 'N: V' a request header (repeatable)
  --cert FILE         client certificate PEM, sent as the peer certificate (source.certificate,
                      as Envoy's include_peer_certificate does); with --xfcc as an XFCC header instead
  --xfcc              send --cert as x-forwarded-client-cert (Hash, Cert, URI), as a trusted proxy would
  --ip ADDR           source IP (default 203.0.113.7)
  --gateway NAME      context_extensions.gateway, as an Envoy route sets it
  --check-request F   a CheckRequest as JSON (what Envoy sends), instead of the above
output: human by default; --json prints the explanation as JSON (the same as POST /explain)
exit codes: 0 explained (whatever the decision), 1 could not load or run, 2 usage error`;

export class ExplainUsage extends Error {}

export interface ExplainArgs {
  readonly config: string;
  readonly url?: string;
  readonly method?: string;
  readonly headers?: readonly string[];
  readonly cert?: string;
  readonly xfcc?: boolean;
  readonly ip?: string;
  readonly gateway?: string;
  readonly checkRequest?: string;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ExplainUsage(`${what}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The CheckRequest Envoy would send for the curl-like flags. */
export function requestFromArgs(a: ExplainArgs): { request: CheckRequest; notes: string[] } {
  const notes: string[] = [];
  if (a.checkRequest !== undefined) {
    if (a.url !== undefined || a.method !== undefined || (a.headers?.length ?? 0) > 0 || a.cert !== undefined || a.ip !== undefined || a.gateway !== undefined) {
      throw new ExplainUsage('--check-request FILE replaces the curl-like flags; give one or the other');
    }
    const text = readText(a.checkRequest, '--check-request');
    try {
      return { request: JSON.parse(text) as CheckRequest, notes };
    } catch (err) {
      throw new ExplainUsage(`--check-request: ${a.checkRequest} is not JSON: ${(err as Error).message}`);
    }
  }
  if (a.url === undefined) throw new ExplainUsage('explain needs a URL (e.g. https://api.example.com/v1/accounts) or --check-request FILE');
  const headers: Record<string, string> = {};
  for (const h of a.headers ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new ExplainUsage(`-H "${h}": write a header as 'Name: value'`);
    headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
  }
  let peerCertificate: string | undefined;
  if (a.cert !== undefined) {
    const pem = readText(a.cert, '--cert');
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch (err) {
      throw new ExplainUsage(`--cert: ${a.cert} is not a PEM certificate: ${(err as Error).message}`);
    }
    // The leaf only: Envoy sends the peer's own certificate.
    const leaf = `${cert.toString().trim()}\n`;
    if (a.xfcc === true) {
      const uris = (cert.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:')).map((n) => n.slice(4));
      const hash = cert.fingerprint256.replace(/:/g, '').toLowerCase();
      headers['x-forwarded-client-cert'] = formatXfccElement({ hash, cert: urlEncodePem(leaf), uri: uris });
      notes.push(`client certificate ${a.cert} sent as x-forwarded-client-cert (believed only on gateways with trustXfcc)`);
    } else {
      peerCertificate = urlEncodePem(leaf);
      notes.push(`client certificate ${a.cert} sent as the peer certificate (source.certificate)`);
    }
  } else if (a.xfcc === true) throw new ExplainUsage('--xfcc needs --cert FILE');
  try {
    const request = checkRequestForUrl({
      url: a.url,
      headers,
      ...(a.method === undefined ? {} : { method: a.method }),
      ...(a.ip === undefined ? {} : { sourceAddress: a.ip }),
      ...(a.gateway === undefined ? {} : { gateway: a.gateway }),
      ...(peerCertificate === undefined ? {} : { peerCertificate }),
    });
    return { request, notes };
  } catch (err) {
    throw new ExplainUsage((err as Error).message);
  }
}

/** Loads the config, explains one request, closes everything; resolves with the explanation. */
export async function explainWithConfig(configPath: string, request: CheckRequest): Promise<Explanation> {
  const config = loadConfigFile(configPath);
  const logger = pino({ level: 'silent' });
  const assembled = await assemble(config, { logger, metrics: new Metrics(false) });
  try {
    // A block lookup needs the store connected; it never waits longer than the configured connect timeout.
    const engine = assembled.stateOf(fdsCapability)?.engine;
    if (engine !== undefined) await engine.store.ready(config.fds?.redis?.connectTimeoutMs ?? 1_000);
    const checker = new Checker(assembled.table, { logger, metrics: new Metrics(false) });
    return await checker.explain(request, Date.now() + Math.max(config.server.defaultDeadlineMs, 2_000));
  } finally {
    await assembled.close();
  }
}

export async function runExplain(a: ExplainArgs, json: boolean, out: (t: string) => void): Promise<number> {
  const { request, notes } = requestFromArgs(a);
  const e = await explainWithConfig(a.config, request);
  if (json) out(JSON.stringify(e, null, 2));
  else out([...notes, formatExplanation(e)].join('\n'));
  return 0;
}
