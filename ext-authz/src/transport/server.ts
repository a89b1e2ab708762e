/**
 * A lean gRPC server on `node:http2` (issue 18): the services grpc-js would
 * host (their ServiceDefinitions and handlers, unchanged), served with a
 * fraction of grpc-js' per-call work. It keeps what Envoy, kubelet probes,
 * grpcurl and operators rely on: unary and streaming calls, `grpc-timeout`
 * deadlines, a receive limit (RESOURCE_EXHAUSTED), gzip/deflate requests,
 * status trailers with percent-encoded messages, server keepalive pings,
 * and drain by GOAWAY. It does not do TLS (Passgate listens in cleartext
 * inside the pod, as with grpc-js), interceptors, channelz or compression of
 * what it sends. What differs from grpc-js is listed in docs/scaling.md.
 */
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { MessageReader } from './framing.js';
import { parseTimeout, statusOf } from './metadata.js';
import { frameStatus, respondMessage, respondStatus, stopReading, StreamCall, UnaryCall } from './calls.js';

type Kind = 'unary' | 'serverStream' | 'clientStream' | 'bidi';

interface Method {
  readonly kind: Kind;
  readonly path: string;
  readonly def: grpc.MethodDefinition<unknown, unknown>;
  readonly fn: (...args: any[]) => void;
}

export interface H2ServerOptions {
  readonly maxMessageBytes: number;
  /** Server-sent PING interval on idle and busy sessions alike (grpc-js' default: 2 h). */
  readonly keepaliveTimeMs?: number;
  /** A PING not acknowledged within this closes the session (grpc-js' default: 20 s). */
  readonly keepaliveTimeoutMs?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS per session (default 1000). */
  readonly maxConcurrentStreams?: number;
  /** Where a handler that throws is reported (the call gets UNKNOWN). */
  readonly onHandlerError?: (path: string, err: unknown) => void;
  /**
   * How long a unary or server-streaming request without `grpc-timeout` may take to arrive (default 30 s):
   * without it, a stream that sends a length prefix and then a trickle would hold its partial message for
   * as long as it likes. Envoy always sends a deadline; a call with one is bounded by it instead.
   */
  readonly requestArrivalMs?: number;
}

/** The one method of grpc.Server that service registration (health, reflection) uses. */
export interface ServiceHost {
  addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void;
}

const noop = (): void => undefined;
const DEFAULT_MAX_CONCURRENT_STREAMS = 1000;
const STREAM_WINDOW_BYTES = 1024 * 1024;
const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;

export class H2GrpcServer implements ServiceHost {
  private readonly methods = new Map<string, Method>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private server: http2.Http2Server | undefined;
  private closing: Promise<void> | undefined;
  private readonly keepaliveTimeMs: number;
  private readonly keepaliveTimeoutMs: number;

  constructor(private readonly options: H2ServerOptions) {
    this.keepaliveTimeMs = options.keepaliveTimeMs ?? 7_200_000;
    this.keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? 20_000;
  }

  /** As grpc.Server#addService: handlers by method name or its original (lowerCamel) name. */
  addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    for (const [name, def] of Object.entries(service)) {
      const original = (def as { originalName?: string }).originalName;
      const fn = (implementation[name] ?? (original ? implementation[original] : undefined)) as Method['fn'] | undefined;
      if (this.methods.has(def.path)) throw new Error(`gRPC method ${def.path} is registered twice`);
      const kind: Kind = def.requestStream ? (def.responseStream ? 'bidi' : 'clientStream') : def.responseStream ? 'serverStream' : 'unary';
      if (fn === undefined) continue; // answered UNIMPLEMENTED, as grpc-js does
      this.methods.set(def.path, { kind, path: def.path, def: def as grpc.MethodDefinition<unknown, unknown>, fn });
    }
  }

  listen(host: string, port: number): Promise<number> {
    const server = http2.createServer({
      // As grpc-js: Node's per-session memory cap misbehaves under load. What a session can hold is bounded
      // instead by maxMessageBytes per stream and maxConcurrentStreams per session (Envoy honours the
      // SETTINGS limit and opens another connection when it needs more streams).
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      // Node's default receive windows are 64 KiB per stream and per connection: Envoy multiplexing a
      // few dozen Checks with bodies would wait for WINDOW_UPDATEs. What a window lets in is still
      // bounded by maxMessageBytes per stream.
      settings: { maxConcurrentStreams: this.options.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS, initialWindowSize: STREAM_WINDOW_BYTES },
    });
    server.on('session', (session) => this.track(session));
    server.on('stream', this.onStream);
    server.on('sessionError', noop);
    this.server = server;
    const bindHost = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, bindHost, () => {
        server.off('error', reject);
        server.on('error', noop);
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  /** Stop taking connections, GOAWAY every session, call back when the last stream is done (every caller, once). */
  tryShutdown(callback: () => void): void {
    const server = this.server;
    if (this.closing !== undefined) {
      void this.closing.then(callback);
      return;
    }
    if (server === undefined || !server.listening) {
      callback();
      return;
    }
    this.closing = new Promise<void>((resolve) => server.close(() => resolve()));
    void this.closing.then(callback);
    for (const s of this.sessions) s.close();
  }

  /** Closes every session at once (running calls see their stream reset, CANCEL). */
  forceShutdown(): void {
    for (const s of this.sessions) s.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
    if (this.server?.listening) this.server.close();
  }

  private track(session: ServerHttp2Session): void {
    this.sessions.add(session);
    session.on('error', noop);
    try {
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    } catch {
      // A session that is already closing keeps the default window.
    }
    let timer: NodeJS.Timeout | undefined;
    if (this.keepaliveTimeMs > 0 && Number.isFinite(this.keepaliveTimeMs)) {
      timer = setInterval(() => this.ping(session), this.keepaliveTimeMs);
      timer.unref();
    }
    session.once('close', () => {
      clearInterval(timer);
      this.sessions.delete(session);
    });
  }

  private ping(session: ServerHttp2Session): void {
    if (session.destroyed || session.closed) return;
    const deadline = setTimeout(() => session.destroy(undefined, http2.constants.NGHTTP2_CANCEL), this.keepaliveTimeoutMs);
    deadline.unref();
    try {
      const sent = session.ping((err) => {
        clearTimeout(deadline);
        if (err && !session.destroyed) session.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
      });
      if (!sent) clearTimeout(deadline); // too many pings in flight already: the earlier ones are timed
    } catch {
      clearTimeout(deadline);
    }
  }

  private readonly onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void => {
    stream.on('error', noop); // a reset stream is not our error; 'close' follows
    if (headers[':method'] !== 'POST') {
      respondHttp(stream, 405);
      return;
    }
    const type = headers['content-type'];
    if (typeof type !== 'string' || !type.startsWith('application/grpc')) {
      respondHttp(stream, 415);
      return;
    }
    const path = headers[':path'] ?? '';
    const method = this.methods.get(path);
    if (method === undefined) {
      respondStatus(stream, grpc.status.UNIMPLEMENTED, `The server does not implement the method ${clip(path)}`);
      return;
    }
    const timeout = parseTimeout(headers['grpc-timeout']);
    if (timeout === null) {
      respondStatus(stream, grpc.status.INTERNAL, `invalid grpc-timeout ${clip(JSON.stringify(headers['grpc-timeout']) ?? '')}: expected 1 to 8 digits and one of H M S m u n`);
      return;
    }
    // Only a compressed message needs a known encoding (MessageReader refuses it); the header alone is harmless.
    const rawEncoding = headers['grpc-encoding'];
    const encoding = typeof rawEncoding === 'string' ? rawEncoding : undefined;
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    if (method.kind === 'unary' || method.kind === 'serverStream') this.readOne(stream, headers, method, deadline, encoding);
    else this.startStreaming(stream, headers, method, deadline, encoding);
  };

  /** Unary and server streaming: exactly one request message, then the handler. */
  private readOne(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, method: Method, deadline: number, encoding: string | undefined): void {
    const max = this.options.maxMessageBytes;
    const reader = new MessageReader(max, encoding);
    const messages: Buffer[] = [];
    let failed = false;
    // A request still arriving at its deadline is ended here (the handler has not started, so nobody else
    // would), and one still arriving after requestArrivalMs whatever its deadline.
    const arrival = this.options.requestArrivalMs ?? 30_000;
    const by = Math.min(deadline, Date.now() + arrival);
    const late = by < deadline ? `the request message did not arrive within ${arrival} ms` : 'deadline exceeded while the request was arriving';
    const timer = setTimeout(() => {
      if (failed) return;
      failed = true;
      respondStatus(stream, grpc.status.DEADLINE_EXCEEDED, late);
    }, Math.max(0, by - Date.now()));
    timer.unref();
    stream.once('close', () => clearTimeout(timer));
    stream.on('data', (chunk: Buffer) => {
      if (failed) return;
      const problem = reader.push(chunk, messages);
      if (problem) {
        failed = true;
        clearTimeout(timer);
        const s = frameStatus(problem, max);
        respondStatus(stream, s.code, s.details);
      } else if (messages.length > 1) {
        failed = true;
        clearTimeout(timer);
        // As grpc-js (the status it sends for this).
        respondStatus(stream, grpc.status.UNIMPLEMENTED, `more than one request message for ${method.path}`);
      }
    });
    stream.on('end', () => {
      clearTimeout(timer);
      if (failed) return;
      // As grpc-js: a call whose stream ends before one whole message is UNIMPLEMENTED ("no request message").
      if (messages.length !== 1 || !reader.atBoundary) {
        respondStatus(stream, grpc.status.UNIMPLEMENTED, reader.atBoundary ? `no request message for ${method.path}` : `no request message for ${method.path}: the stream ended inside one`);
        return;
      }
      let request: unknown;
      try {
        request = method.def.requestDeserialize(messages[0]!);
      } catch {
        respondStatus(stream, grpc.status.INTERNAL, `cannot decode the request message of ${method.path}`);
        return;
      }
      if (method.kind === 'unary') this.runUnary(stream, headers, method, deadline, request);
      else {
        const call = new StreamCall(stream, headers, deadline, method.path, method.def.responseSerialize, method.def.requestDeserialize, this.options.maxMessageBytes, encoding, false);
        call.request = request;
        this.invoke(method, () => method.fn(call), (err) => call.destroy(asError(err)));
      }
    });
  }

  private runUnary(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, method: Method, deadline: number, request: unknown): void {
    const call = new UnaryCall(request, stream, headers, deadline, method.path);
    let answered = false;
    const callback = (err: unknown, value?: unknown): void => {
      if (answered) return;
      answered = true;
      call.markAnswered();
      if (err) {
        const s = statusOf(err);
        respondStatus(stream, s.code, s.details);
        return;
      }
      let bytes: Buffer;
      try {
        bytes = method.def.responseSerialize(value);
      } catch {
        respondStatus(stream, grpc.status.INTERNAL, `cannot encode the response of ${method.path}`);
        return;
      }
      respondMessage(stream, bytes);
    };
    this.invoke(method, () => method.fn(call, callback), (err) => callback({ code: grpc.status.UNKNOWN, details: `handler of ${method.path} failed: ${String((err as Error)?.message ?? err)}` }));
  }

  /** Client and bidi streaming: the handler starts at once with a Duplex of messages. */
  private startStreaming(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, method: Method, deadline: number, encoding: string | undefined): void {
    const call = new StreamCall(stream, headers, deadline, method.path, method.def.responseSerialize, method.def.requestDeserialize, this.options.maxMessageBytes, encoding, true);
    if (method.kind === 'bidi') {
      this.invoke(method, () => method.fn(call), (err) => call.destroy(asError(err)));
      return;
    }
    let answered = false;
    const callback = (err: unknown, value?: unknown): void => {
      if (answered) return;
      answered = true;
      if (err) {
        const s = statusOf(err);
        call.finish(s.code, s.details);
        return;
      }
      call.end(value);
    };
    this.invoke(method, () => method.fn(call, callback), (err) => callback({ code: grpc.status.UNKNOWN, details: String((err as Error)?.message ?? err) }));
  }

  private invoke(method: Method, run: () => void, failed: (err: unknown) => void): void {
    try {
      run();
    } catch (err) {
      this.options.onHandlerError?.(method.path, err);
      failed(err);
    }
  }
}

/** Client-sent text quoted in a status message stays short (the message is a trailer the client must accept). */
function clip(text: string): string {
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}

function respondHttp(stream: ServerHttp2Stream, status: number): void {
  try {
    stream.respond({ ':status': status }, { endStream: true });
    stopReading(stream);
  } catch {
    // Reset by the peer meanwhile.
  }
}

/** A handler that threw: the call ends UNKNOWN with its message (the thrown object itself is left alone). */
function asError(err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  return Object.assign(new Error(message), { code: grpc.status.UNKNOWN, details: message });
}
