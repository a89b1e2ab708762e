/**
 * The router part: sends the (authorized, mutated) request to the upstream
 * with node:http, streaming the body both ways. Like Envoy's router it drops
 * hop-by-hop headers, turns `:authority` into `host`, answers 503 when the
 * upstream cannot be reached and 504 when it is too slow (route timeout).
 */
import http from 'node:http';
import type { Readable } from 'node:stream';

export type HeaderList = Array<[string, string]>;

export interface UpstreamTarget {
  readonly host: string;
  readonly port: number;
  /** Envoy's route timeout (default 15 s): 504 when the response headers take longer. */
  readonly timeoutMs?: number;
}

export type UpstreamResult =
  | { readonly kind: 'response'; readonly status: number; readonly headers: HeaderList; readonly body: Readable }
  | { readonly kind: 'local'; readonly status: number; readonly headers: HeaderList; readonly body: string; readonly details: string };

/** Connection-specific headers a proxy never forwards (RFC 9110 7.6.1, as Envoy strips them). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings']);

function connectionTokens(headers: HeaderList): Set<string> {
  const out = new Set<string>();
  for (const [k, v] of headers) if (k === 'connection') for (const t of v.split(',')) out.add(t.trim().toLowerCase());
  return out;
}

/** Outgoing header object for node:http (repeated headers as arrays keep separate lines). */
export function upstreamHeaders(headers: HeaderList): http.OutgoingHttpHeaders {
  const listed = connectionTokens(headers);
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of headers) {
    if (k.startsWith(':') || HOP_BY_HOP.has(k) || listed.has(k) || k === 'host') continue;
    const prev = out[k];
    if (prev === undefined) out[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[k] = [prev, v];
  }
  const authority = headers.find(([k]) => k === ':authority')?.[1];
  if (authority) out['host'] = authority;
  return out;
}

/** Response headers from the upstream as a lowercased list, hop-by-hop removed. */
export function downstreamHeaders(raw: readonly string[]): HeaderList {
  const list: HeaderList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) list.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  const listed = connectionTokens(list);
  return list.filter(([k]) => !HOP_BY_HOP.has(k) && !listed.has(k));
}

function local(status: number, details: string, body: string): UpstreamResult {
  return { kind: 'local', status, details, body, headers: [['content-type', 'text/plain']] };
}

/**
 * Forwards one request. `body` is the downstream request stream (already
 * paused or unread); it is piped as it arrives. A Buffer is a body an
 * ext_proc processor replaced (sent whole).
 */
export function forward(target: UpstreamTarget, agent: http.Agent, headers: HeaderList, body: Readable | Buffer | null): Promise<UpstreamResult> {
  const method = headers.find(([k]) => k === ':method')?.[1] ?? 'GET';
  const path = headers.find(([k]) => k === ':path')?.[1] ?? '/';
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: UpstreamResult) => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    const up = http.request({ host: target.host, port: target.port, method, path, headers: upstreamHeaders(headers), agent });
    const timer = setTimeout(() => {
      done(local(504, 'upstream_response_timeout', 'upstream request timeout'));
      up.destroy();
    }, target.timeoutMs ?? 15_000);
    up.on('response', (res) => {
      clearTimeout(timer);
      const list = downstreamHeaders(res.rawHeaders);
      // Envoy's router adds this before the encoder filters (our sanitize filter strips it again).
      list.push(['x-envoy-upstream-service-time', String(Number((process.hrtime.bigint() - started) / 1_000_000n))]);
      if (settled) {
        res.resume();
        return;
      }
      done({ kind: 'response', status: res.statusCode ?? 502, headers: list, body: res });
    });
    up.on('error', (err) => {
      clearTimeout(timer);
      done(local(503, 'upstream_reset_before_response_started{connection_failure}',
        `upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
    if (Buffer.isBuffer(body)) up.end(body);
    else if (body) {
      body.on('error', () => up.destroy());
      body.pipe(up);
    } else up.end();
  });
}
