/**
 * The call objects handlers see. They keep the parts of grpc-js' server call
 * API that service code uses (request, getDeadline, cancelled, a Duplex for
 * streams), so the same handlers run on either transport.
 */
import { Duplex } from 'node:stream';
import * as http2 from 'node:http2';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { ACCEPTED_ENCODINGS, frame, MessageReader, type FrameProblem } from './framing.js';
import { encodeMessage } from './metadata.js';

const RESPONSE_HEADERS = Object.freeze({ ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': ACCEPTED_ENCODINGS });
const OK_TRAILERS = Object.freeze({ 'grpc-status': '0' });

/** Headers that are the transport's own, not call metadata. */
const RESERVED = new Set(['content-type', 'te', 'user-agent', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding']);

/** A status answered as a trailers-only response (no message was sent). */
export function respondStatus(stream: ServerHttp2Stream, code: number, details: string): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond(
      // grpc-accept-encoding here too: a client refused for its encoding learns which ones to use (compression spec).
      { ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': ACCEPTED_ENCODINGS, 'grpc-status': String(code), ...(details ? { 'grpc-message': encodeMessage(details) } : {}) },
      { endStream: true },
    );
    stopReading(stream);
  } catch {
    // The peer reset the stream between the check and the write: nobody to answer.
  }
}

/**
 * After the final frame, a client still sending gets RST_STREAM(NO_ERROR): the
 * answer is out, and its stream must not stay open (PROTOCOL-HTTP2.md allows this).
 */
export function stopReading(stream: ServerHttp2Stream): void {
  if (!stream.readableEnded && !stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

/** The message and status for a framing problem. */
export function frameStatus(problem: FrameProblem, maxBytes: number): { code: number; details: string } {
  switch (problem.kind) {
    case 'too_large':
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: `received message larger than max (${problem.bytes} vs. ${maxBytes})` };
    case 'bad_flag':
      return { code: grpc.status.INTERNAL, details: `invalid message flag ${problem.flag}` };
    case 'compressed_without_encoding':
      return { code: grpc.status.INTERNAL, details: 'compressed message without a grpc-encoding' };
    case 'unsupported_encoding':
      return { code: grpc.status.UNIMPLEMENTED, details: `grpc-encoding ${problem.encoding} is not supported; use identity, gzip or deflate` };
    case 'cannot_decompress':
      return { code: grpc.status.INTERNAL, details: `message does not decompress as ${problem.encoding}` };
  }
}

/** Sends one message with status OK: headers, the message, trailers. */
export function respondMessage(stream: ServerHttp2Stream, bytes: Uint8Array): void {
  if (stream.destroyed || stream.headersSent) return;
  try {
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', sendOkTrailers);
    stream.end(frame(bytes));
  } catch {
    // Reset by the peer meanwhile.
  }
}

function sendOkTrailers(this: ServerHttp2Stream): void {
  try {
    this.sendTrailers(OK_TRAILERS);
  } catch {
    // Reset by the peer meanwhile.
  }
}

function metadataOf(headers: IncomingHttpHeaders): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(':') || RESERVED.has(key) || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) {
      try {
        // Binary values arrive base64, several of them comma-joined in one header.
        if (key.endsWith('-bin')) for (const part of v.split(',')) md.add(key, Buffer.from(part.trim(), 'base64'));
        else md.add(key, v);
      } catch {
        // A header name grpc-js' Metadata refuses (HTTP/2 allows more characters): not metadata.
      }
    }
  }
  return md;
}

/** A handler's trailing metadata as trailer fields; the transport's own names are never taken from it. */
function trailersOf(md: grpc.Metadata | undefined): Record<string, string | string[]> {
  if (md === undefined) return {};
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(md.toHttp2Headers())) {
    if (k.startsWith(':') || k.startsWith('grpc-') || RESERVED.has(k) || v === undefined) continue;
    out[k] = v as string | string[];
  }
  return out;
}

function peerOf(stream: ServerHttp2Stream): string {
  const s = stream.session?.socket;
  if (s === undefined || s.remoteAddress === undefined) return 'unknown';
  return s.remoteFamily === 'IPv6' ? `[${s.remoteAddress}]:${s.remotePort}` : `${s.remoteAddress}:${s.remotePort}`;
}

/** What a unary or server-streaming handler gets (grpc-js ServerUnaryCall's used parts). */
export class UnaryCall<Req> {
  private md: grpc.Metadata | undefined;
  /** Set when the answer went out; a stream that closes before that was cancelled. */
  private answered = false;

  constructor(
    readonly request: Req,
    private readonly stream: ServerHttp2Stream,
    private readonly headers: IncomingHttpHeaders,
    private readonly deadline: number,
    private readonly path: string,
  ) {}

  get metadata(): grpc.Metadata {
    return (this.md ??= metadataOf(this.headers));
  }

  /** The stream closed (a client reset, with any code, or the session went away) before the answer went out. */
  get cancelled(): boolean {
    return !this.answered && (this.stream.destroyed || this.stream.closed);
  }

  markAnswered(): void {
    this.answered = true;
  }

  /** Epoch ms, Infinity when the caller set none (as grpc-js). */
  getDeadline(): grpc.Deadline {
    return this.deadline;
  }

  getPeer(): string {
    return peerOf(this.stream);
  }

  getPath(): string {
    return this.path;
  }

  on(event: string, listener: () => void): this {
    if (event === 'cancelled') this.stream.once('close', () => this.cancelled && listener());
    return this;
  }

  once(event: string, listener: () => void): this {
    return this.on(event, listener);
  }

  sendMetadata(): void {
    // Headers go out with the answer.
  }
}

/**
 * A streaming call: an object-mode Duplex of decoded requests and responses
 * (grpc-js ServerDuplexStream's used parts). After the client resets the
 * stream, writes are dropped instead of raising errors nobody listens for.
 */
export class StreamCall<Req, Res> extends Duplex {
  request: Req | undefined;
  cancelled = false;
  private finished = false;
  /** Trailing metadata from end(metadata). */
  private trailing: grpc.Metadata | undefined;
  /** The readable side has ended (pushed null once). */
  private readingDone = false;
  private md: grpc.Metadata | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly headers: IncomingHttpHeaders,
    private readonly deadline: number,
    private readonly path: string,
    private readonly serialize: (value: Res) => Buffer,
    deserialize: (bytes: Buffer) => Req,
    maxBytes: number,
    encoding: string | undefined,
    /** False for server streaming: the handler starts with `request` set, the stream only writes. */
    clientStreams: boolean,
  ) {
    super({ objectMode: true, allowHalfOpen: true });
    stream.on('close', () => {
      clearTimeout(this.timer);
      if (this.finished) return;
      this.finished = true;
      this.cancelled = true;
      this.endReading();
      this.emit('cancelled', 'cancelled');
    });
    // Beyond setTimeout's range (~24.8 days) a timer would fire at once; such a deadline is none.
    if (Number.isFinite(deadline) && deadline - Date.now() < 2 ** 31 - 1) {
      this.timer = setTimeout(() => {
        this.finish(grpc.status.DEADLINE_EXCEEDED, 'deadline exceeded');
        this.cancelled = true;
        this.emit('cancelled', 'deadline');
      }, Math.max(0, deadline - Date.now()));
      this.timer.unref();
    }
    if (!clientStreams) {
      this.endReading();
      return;
    }
    const reader = new MessageReader(maxBytes, encoding);
    const messages: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => {
      // After the status went out nothing more is read (a push after the end would be an 'error' event).
      if (this.finished || this.readingDone) return;
      const problem = reader.push(chunk, messages);
      for (const bytes of messages.splice(0)) {
        let msg: Req;
        try {
          msg = deserialize(bytes);
        } catch {
          this.finish(grpc.status.INTERNAL, `cannot decode the request message of ${path}`);
          return;
        }
        if (!this.push(msg)) stream.pause();
      }
      // Answers that cannot go out (a client that does not read them: flow control holds our DATA) are
      // not a reason to read more requests: paused, the stream stops granting the client window.
      if (this.writableNeedDrain) stream.pause();
      if (problem) {
        const s = frameStatus(problem, maxBytes);
        this.finish(s.code, s.details);
      }
    });
    this.on('drain', () => this.resumeReading());
    stream.on('end', () => {
      if (!this.finished && !reader.atBoundary) this.finish(grpc.status.INTERNAL, 'the request stream ended inside a message');
      this.endReading();
    });
  }

  get metadata(): grpc.Metadata {
    return (this.md ??= metadataOf(this.headers));
  }

  getDeadline(): grpc.Deadline {
    return this.deadline;
  }

  getPeer(): string {
    return peerOf(this.stream);
  }

  getPath(): string {
    return this.path;
  }

  sendMetadata(): void {
    this.sendHeaders();
  }

  private endReading(): void {
    if (this.readingDone) return;
    this.readingDone = true;
    this.push(null);
  }

  override _read(): void {
    this.resumeReading();
  }

  /** Reads on when the handler wants requests and its answers are going out. */
  private resumeReading(): void {
    if (!this.stream.destroyed && !this.writableNeedDrain && this.readableLength < this.readableHighWaterMark) this.stream.resume();
  }

  override _write(msg: Res, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.finished || this.stream.destroyed) {
      callback();
      return;
    }
    let bytes: Buffer;
    try {
      bytes = this.serialize(msg);
    } catch {
      this.finish(grpc.status.INTERNAL, `cannot encode a response message of ${this.path}`);
      callback();
      return;
    }
    this.sendHeaders();
    try {
      this.stream.write(frame(bytes), () => callback());
    } catch {
      callback();
    }
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.finish(grpc.status.OK, '');
    callback();
  }

  /** Ends the call with a status (OK from end(), an error from the transport or the handler). */
  finish(code: number, details: string): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    const stream = this.stream;
    if (stream.destroyed) return;
    if (!stream.headersSent) {
      respondStatus(stream, code, details);
    } else {
      const trailing = this.trailing;
      stream.once('wantTrailers', () => {
        try {
          stream.sendTrailers({ ...trailersOf(trailing), 'grpc-status': String(code), ...(details ? { 'grpc-message': encodeMessage(details) } : {}) });
          // RST_STREAM submitted in this same tick would leave before the trailers and drop them.
          setImmediate(stopReading, stream);
        } catch {
          // Reset meanwhile.
        }
      });
      stream.end();
    }
    if (code !== grpc.status.OK) {
      // The request side is over too: stop reading and let the handler see the end.
      this.endReading();
    }
  }

  private sendHeaders(): void {
    if (this.stream.headersSent || this.stream.destroyed) return;
    try {
      this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    } catch {
      // Reset meanwhile.
    }
  }

  /**
   * As grpc-js' `end(metadata)`: the metadata goes into the trailers, never out as a message.
   * (Duplex#end(chunk) would write it.)
   */
  override end(...args: unknown[]): this {
    const [first] = args;
    if (first instanceof grpc.Metadata) {
      this.trailing = first;
      return super.end();
    }
    return super.end(...(args as []));
  }

  /**
   * grpc-js lets a handler end a stream with an error status this way; without an error the call
   * ends CANCELLED (grpc-js would leave the client waiting for its deadline).
   */
  override destroy(error?: Error | null): this {
    if (error) {
      const e = error as { code?: number; details?: string };
      this.finish(typeof e.code === 'number' && Number.isInteger(e.code) && e.code > 0 ? e.code : grpc.status.INTERNAL, e.details ?? error.message);
    } else if (!this.finished) {
      this.finish(grpc.status.CANCELLED, 'the server cancelled the call');
    }
    return super.destroy();
  }
}
