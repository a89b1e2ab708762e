/**
 * Envoy's ext_proc filter (envoy.filters.http.ext_proc) as the local gateway
 * runs it, before ext_authz as istio/e2ee/ext-proc.yaml orders it. One
 * `Process` stream per HTTP request, one message per phase, each answer
 * awaited within `message_timeout` (docs/contracts/ext-proc.md):
 *
 * - request headers always (values in `raw_value`, as Envoy >= 1.27 sends
 *   them), with the `source.address` attribute the EnvoyFilter asks for;
 * - `mode_override` honoured (allow_mode_override: true): a BUFFERED request
 *   body is sent only when the processor asked for it, whole, with
 *   end_of_stream; beyond the buffer limit the request is a local 413 as
 *   Envoy's buffer filter answers, without asking the processor;
 * - header mutations with Envoy's rules: no `:`-prefixed, `host` or
 *   `x-envoy-*` change, a refused one is an error (disallow_is_error: true);
 *   a HeaderValue with both value and raw_value is refused as Envoy does;
 * - body mutation: in BUFFERED mode with request headers SENT the processor
 *   must set the new content-length; a stale one fails the request (500),
 *   as Envoy >= 1.29 does (envoy#29536);
 * - ImmediateResponse: the local reply, its headers and body;
 * - failure_mode_allow false: a timeout, a gRPC error, the stream ending
 *   early or an answer to the wrong phase is a 500 local reply;
 * - optionally response headers and a BUFFERED response body, when the
 *   processor asked for them in mode_override.
 *
 * Where it cannot behave like Envoy: it buffers in memory per request
 * (Envoy uses the connection's buffer and watermarks), a body larger than
 * the limit is refused before the processor sees anything (Envoy sends 413
 * too, but only once the buffer overflows), trailers are never sent, the
 * Process stream has no overall deadline (Envoy's `grpc_service.timeout`
 * is per stream open), and content-length mismatches of the downstream
 * HTTP/1 request are node's parser errors, not Envoy's codec's.
 */
import type { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { createExtProcClient, type ExtProcClient, type HeaderMutation, type ImmediateResponse, type ProcessingMode, type ProcessingRequest, type ProcessingResponse } from '../../ext-authz/src/e2ee/ext-proc-proto.js';
import { setHeader, type HeaderList } from './apply-check-response.js';

export interface ExtProcOptions {
  /** host:port of the processor (Passgate's gRPC port). */
  readonly target: string;
  /** Envoy's message_timeout (default 200 ms). */
  readonly messageTimeoutMs?: number;
  /** Envoy per_connection_buffer_limit_bytes for a BUFFERED body (default 1 MiB). */
  readonly bufferLimitBytes?: number;
  /** Envoy's default status of a failed ext_proc stream with failure_mode_allow false. */
  readonly statusOnError?: number;
}

const HeaderMode = { DEFAULT: 0, SEND: 1, SKIP: 2 } as const;
const BodyMode = { NONE: 0, BUFFERED: 2 } as const;

/** What the filter config of istio/e2ee/ext-proc.yaml sets; mode_override changes it per request. */
const CONFIGURED: Required<Pick<ProcessingMode, 'request_body_mode' | 'response_header_mode' | 'response_body_mode'>> = {
  request_body_mode: BodyMode.NONE,
  response_header_mode: HeaderMode.SKIP,
  response_body_mode: BodyMode.NONE,
};

export type LocalReply = { readonly status: number; readonly headers: HeaderList; readonly body: Buffer };

export class ExtProcFailure extends Error {}

function localError(status: number, why: string): LocalReply {
  return { status, headers: [['content-type', 'text/plain']], body: Buffer.from(`ext_proc: ${why}\n`) };
}

function toProto(headers: HeaderList): ProcessingRequest['request_headers'] {
  return { headers: { headers: headers.map(([key, v]) => ({ key, raw_value: Buffer.from(v, 'latin1') })) } };
}

/** Envoy's default mutation rules plus disallow_is_error: these names are never changed by a processor. */
function mayMutate(name: string): boolean {
  return name !== '' && !name.startsWith(':') && name !== 'host' && !name.startsWith('x-envoy-') && /^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name);
}

/** Applies a HeaderMutation as mutation_utils does; throws ExtProcFailure where Envoy fails the request. */
export function applyMutation(headers: HeaderList, m: HeaderMutation | undefined): void {
  if (m === undefined) return;
  for (const name of m.remove_headers ?? []) {
    const k = name.toLowerCase();
    if (!mayMutate(k)) throw new ExtProcFailure(`may not remove ${k}`);
    for (let i = headers.length - 1; i >= 0; i--) if (headers[i]![0] === k) headers.splice(i, 1);
  }
  for (const o of m.set_headers ?? []) {
    const h = o.header;
    if (h === undefined) continue;
    const k = (h.key ?? '').toLowerCase();
    const raw = h.raw_value !== undefined && h.raw_value.length > 0 ? Buffer.from(h.raw_value) : undefined;
    if (raw !== undefined && (h.value ?? '') !== '') throw new ExtProcFailure(`${k}: only one of value or raw_value may be set`);
    // Envoy >= 1.27 (send_header_raw_value on) reads raw_value only: a value-only mutation sets an empty header.
    const value = raw === undefined ? '' : raw.toString('latin1');
    if (!mayMutate(k)) throw new ExtProcFailure(`may not set ${k}`);
    if (/[\0\r\n]/.test(value)) throw new ExtProcFailure(`invalid value for ${k}`);
    const action = o.append_action ?? 0;
    const exists = headers.some(([n]) => n === k);
    if (action === 0) {
      if (o.append?.value === true) headers.push([k, value]);
      else setHeader(headers, k, value);
    } else if (action === 1) {
      if (!exists) headers.push([k, value]);
    } else if (action === 2) setHeader(headers, k, value);
    else if (action === 3) {
      if (exists) setHeader(headers, k, value);
    } else throw new ExtProcFailure(`unknown append_action ${action} for ${k}`);
  }
}

async function readAll(body: Readable, limit: number): Promise<Buffer | 'too_large'> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > limit) return 'too_large';
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks, n);
}

function immediate(i: ImmediateResponse): LocalReply {
  const headers: HeaderList = [];
  try {
    applyMutation(headers, i.headers);
  } catch {
    // Envoy applies the filter's mutation rules to immediate responses (>= 1.27) and drops what they refuse.
  }
  const code = i.status?.code;
  return { status: code !== undefined && code >= 200 && code <= 599 ? code : 500, headers, body: Buffer.from(i.body ?? Buffer.alloc(0)) };
}

/** One request's Process stream. */
export class ExtProcExchange {
  private readonly call: grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
  private readonly queue: ProcessingResponse[] = [];
  private waiter: ((r: ProcessingResponse | Error) => void) | undefined;
  private ended: Error | undefined;
  private mode = { ...CONFIGURED };
  /** Messages sent on this stream (a bench counts round trips). */
  messages = 0;

  constructor(
    client: ExtProcClient,
    private readonly o: Required<Omit<ExtProcOptions, 'target'>>,
  ) {
    this.call = client.Process(new grpc.Metadata());
    this.call.on('data', (r: ProcessingResponse) => this.deliver(r));
    this.call.on('error', (e: Error) => this.finish(e));
    this.call.on('end', () => this.finish(new Error('the processor closed the stream')));
  }

  private deliver(r: ProcessingResponse | Error): void {
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w(r);
    } else if (!(r instanceof Error)) this.queue.push(r);
  }

  private finish(e: Error): void {
    if (this.ended === undefined) this.ended = e;
    this.deliver(e);
  }

  private send(msg: ProcessingRequest): Promise<ProcessingResponse> {
    if (this.ended !== undefined) return Promise.reject(new ExtProcFailure(this.ended.message));
    this.messages++;
    this.call.write(msg);
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new ExtProcFailure(`no answer within message_timeout ${this.o.messageTimeoutMs} ms`));
      }, this.o.messageTimeoutMs);
      this.waiter = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(new ExtProcFailure(r.message));
        else resolve(r);
      };
    });
  }

  close(): void {
    this.call.end();
    this.call.cancel();
  }

  /**
   * Request headers, then the buffered body when asked. Mutates `headers`;
   * returns the new body (Buffer), `undefined` when the body was not asked
   * for (stream it as is), or a local reply.
   */
  async request(headers: HeaderList, body: Readable | null, sourceAddress: string): Promise<{ kind: 'continue'; body: Buffer | undefined } | { kind: 'reply'; reply: LocalReply }> {
    try {
      const h = await this.send({
        request_headers: { ...toProto(headers), end_of_stream: body === null },
        attributes: { 'envoy.filters.http.ext_proc': { fields: { 'source.address': { string_value: sourceAddress } } } } as unknown as ProcessingRequest['attributes'],
      });
      if (h.immediate_response) return { kind: 'reply', reply: immediate(h.immediate_response) };
      if (h.request_headers === undefined) throw new ExtProcFailure('answer to request headers is not a request_headers response');
      applyMutation(headers, h.request_headers.response?.header_mutation);
      if (h.mode_override) {
        const m = h.mode_override;
        if (m.request_body_mode !== undefined) this.mode.request_body_mode = m.request_body_mode;
        if (m.response_header_mode !== undefined) this.mode.response_header_mode = m.response_header_mode;
        if (m.response_body_mode !== undefined) this.mode.response_body_mode = m.response_body_mode;
      }
      if (body === null || this.mode.request_body_mode !== BodyMode.BUFFERED) return { kind: 'continue', body: undefined };
      const all = await readAll(body, this.o.bufferLimitBytes);
      if (all === 'too_large') return { kind: 'reply', reply: { status: 413, headers: [['content-type', 'text/plain']], body: Buffer.from('Payload Too Large') } };
      const b = await this.send({ request_body: { body: all, end_of_stream: true } });
      if (b.immediate_response) return { kind: 'reply', reply: immediate(b.immediate_response) };
      if (b.request_body === undefined) throw new ExtProcFailure('answer to the request body is not a request_body response');
      const common = b.request_body.response;
      applyMutation(headers, common?.header_mutation);
      const mutated = common?.body_mutation;
      const out = mutated?.clear_body === true ? Buffer.alloc(0) : mutated?.body !== undefined ? Buffer.from(mutated.body) : all;
      const cl = headers.find(([k]) => k === 'content-length')?.[1];
      if (cl !== undefined && cl !== String(out.length)) throw new ExtProcFailure(`content-length ${cl} does not match the mutated body (${out.length} bytes)`);
      return { kind: 'continue', body: out };
    } catch (err) {
      if (err instanceof ExtProcFailure) return { kind: 'reply', reply: localError(this.o.statusOnError, err.message) };
      throw err;
    }
  }

  /** Whether the processor asked to see the response. */
  get wantsResponse(): boolean {
    return this.mode.response_header_mode === HeaderMode.SEND || this.mode.response_body_mode === BodyMode.BUFFERED;
  }

  /** Response headers (and the buffered body) through the processor; `headers` is mutated. */
  async response(status: number, headers: HeaderList, body: Readable): Promise<{ status: number; headers: HeaderList; body: Buffer | Readable }> {
    try {
      if (this.mode.response_header_mode === HeaderMode.SEND) {
        const r = await this.send({ response_headers: toProto([[':status', String(status)], ...headers]) });
        if (r.immediate_response) {
          body.resume();
          return immediate(r.immediate_response);
        }
        if (r.response_headers === undefined) throw new ExtProcFailure('answer to response headers is not a response_headers response');
        applyMutation(headers, r.response_headers.response?.header_mutation);
      }
      if (this.mode.response_body_mode !== BodyMode.BUFFERED) return { status, headers, body };
      const all = await readAll(body, this.o.bufferLimitBytes);
      if (all === 'too_large') return localError(500, 'response body over the buffer limit');
      const r = await this.send({ response_body: { body: all, end_of_stream: true } });
      if (r.immediate_response) return immediate(r.immediate_response);
      if (r.response_body === undefined) throw new ExtProcFailure('answer to the response body is not a response_body response');
      applyMutation(headers, r.response_body.response?.header_mutation);
      const m = r.response_body.response?.body_mutation;
      const out = m?.clear_body === true ? Buffer.alloc(0) : m?.body !== undefined ? Buffer.from(m.body) : all;
      const cl = headers.find(([k]) => k === 'content-length')?.[1];
      if (cl !== undefined && cl !== String(out.length)) throw new ExtProcFailure(`response content-length ${cl} does not match the mutated body (${out.length} bytes)`);
      return { status, headers, body: out };
    } catch (err) {
      body.resume();
      if (err instanceof ExtProcFailure) return localError(this.o.statusOnError, err.message);
      throw err;
    }
  }
}

/** The filter: one client (Envoy's cluster) for every request's stream. */
export class ExtProcFilter {
  private readonly client: ExtProcClient;
  private readonly settings: Required<Omit<ExtProcOptions, 'target'>>;

  constructor(
    options: ExtProcOptions,
    private readonly logger: Logger,
  ) {
    this.client = createExtProcClient(options.target);
    this.settings = { messageTimeoutMs: options.messageTimeoutMs ?? 200, bufferLimitBytes: options.bufferLimitBytes ?? 1024 * 1024, statusOnError: options.statusOnError ?? 500 };
  }

  /** Connect now, as Envoy keeps its cluster connected (the first request must not pay the handshake). */
  ready(): Promise<void> {
    return new Promise((resolve) => this.client.waitForReady(Date.now() + 1_000, () => resolve()));
  }

  open(): ExtProcExchange {
    return new ExtProcExchange(this.client, this.settings);
  }

  warn(why: string): void {
    this.logger.warn({ why }, 'ext_proc stream failed');
  }

  close(): void {
    this.client.close();
  }
}
