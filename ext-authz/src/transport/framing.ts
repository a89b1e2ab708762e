/**
 * gRPC length-prefixed messages over an HTTP/2 stream (the "Length-Prefixed-Message"
 * of https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): one flag byte
 * (1 = compressed with the stream's `grpc-encoding`), a 4-byte big-endian length,
 * then the message. DATA frames split and join messages freely, so the reader is
 * incremental; it never holds more than one message (its own copy) plus one header.
 */
import { gunzipSync, inflateSync } from 'node:zlib';

export const HEADER_BYTES = 5;
const EMPTY = Buffer.alloc(0);

/** Why a stream's bytes cannot be read as messages; mapped to a gRPC status by the caller. */
export type FrameProblem =
  | { readonly kind: 'too_large'; readonly bytes: number }
  | { readonly kind: 'bad_flag'; readonly flag: number }
  | { readonly kind: 'compressed_without_encoding' }
  | { readonly kind: 'unsupported_encoding'; readonly encoding: string }
  | { readonly kind: 'cannot_decompress'; readonly encoding: string };

/** Encodings a client may compress with (we never compress what we send). */
export const ACCEPTED_ENCODINGS = 'identity,deflate,gzip';

export function isAcceptedEncoding(encoding: string | undefined): boolean {
  return encoding === undefined || encoding === 'identity' || encoding === 'gzip' || encoding === 'deflate';
}

/** First size of a message's own buffer; it doubles as bytes arrive, up to the declared length. */
const FIRST_BODY_BYTES = 16 * 1024;

/**
 * Splits incoming chunks into whole messages. `push` returns the messages that
 * completed (a view of the chunk when one chunk carries the whole message) or a
 * problem; after a problem the reader is done and takes nothing more.
 *
 * A message that spans chunks is copied into a buffer of its own as its bytes
 * arrive: `node:http2` hands each DATA frame over as a slice of the socket's read
 * buffer (up to 64 KiB), so keeping the slices would hold every read buffer a
 * trickling client caused, and joining them at the end cost time quadratic in
 * their number (one-byte frames stalled the event loop for seconds).
 */
export class MessageReader {
  private readonly head = Buffer.alloc(HEADER_BYTES);
  private headFill = 0;
  /** Length of the message being collected, -1 while its header is incomplete. */
  private need = -1;
  private flag = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  private failed = false;

  constructor(
    private readonly maxBytes: number,
    private readonly encoding: string | undefined,
  ) {}

  /** True when no partial message is buffered (the stream may end here). */
  get atBoundary(): boolean {
    return this.headFill === 0 && this.need === -1;
  }

  push(chunk: Buffer, out: Buffer[]): FrameProblem | undefined {
    if (this.failed) return undefined;
    const n = chunk.length;
    let at = 0;
    while (at < n) {
      if (this.need === -1) {
        let flag: number;
        let len: number;
        if (this.headFill === 0 && n - at >= HEADER_BYTES) {
          flag = chunk[at]!;
          len = chunk.readUInt32BE(at + 1);
          at += HEADER_BYTES;
        } else {
          const part = Math.min(HEADER_BYTES - this.headFill, n - at);
          chunk.copy(this.head, this.headFill, at, at + part);
          this.headFill += part;
          at += part;
          if (this.headFill < HEADER_BYTES) return undefined;
          this.headFill = 0;
          flag = this.head[0]!;
          len = this.head.readUInt32BE(1);
        }
        const problem = this.check(flag, len);
        if (problem) return problem;
        // A zero-length message is legal (an empty CheckRequest) and may end exactly where the bytes do.
        if (len === 0 || n - at >= len) {
          const whole = len === 0 ? EMPTY : chunk.subarray(at, at + len);
          at += len;
          const emitted = this.emit(flag, whole, out);
          if (emitted) return emitted;
          continue;
        }
        this.flag = flag;
        this.need = len;
        this.body = Buffer.allocUnsafe(Math.min(len, Math.max(FIRST_BODY_BYTES, n - at)));
        this.bodyFill = 0;
      }
      const part = Math.min(this.need - this.bodyFill, n - at);
      let body = this.body!;
      if (this.bodyFill + part > body.length) {
        const grown = Buffer.allocUnsafe(Math.min(this.need, Math.max(this.bodyFill + part, body.length * 2)));
        body.copy(grown, 0, 0, this.bodyFill);
        this.body = body = grown;
      }
      chunk.copy(body, this.bodyFill, at, at + part);
      this.bodyFill += part;
      at += part;
      if (this.bodyFill < this.need) return undefined;
      this.need = -1;
      this.body = undefined;
      this.bodyFill = 0;
      const emitted = this.emit(this.flag, body, out);
      if (emitted) return emitted;
    }
    return undefined;
  }

  private check(flag: number, len: number): FrameProblem | undefined {
    if (flag !== 0 && flag !== 1) return this.fail({ kind: 'bad_flag', flag });
    if (len > this.maxBytes) return this.fail({ kind: 'too_large', bytes: len });
    if (flag === 1 && (this.encoding === undefined || this.encoding === 'identity')) return this.fail({ kind: 'compressed_without_encoding' });
    // The spec: a message compressed with an encoding the server lacks is UNIMPLEMENTED (the header alone is not).
    if (flag === 1 && !isAcceptedEncoding(this.encoding)) return this.fail({ kind: 'unsupported_encoding', encoding: this.encoding! });
    return undefined;
  }

  private emit(flag: number, body: Buffer, out: Buffer[]): FrameProblem | undefined {
    if (flag === 0) {
      out.push(body);
      return undefined;
    }
    // The limit applies to what the message expands to, not only to what was sent.
    const options = { maxOutputLength: this.maxBytes };
    try {
      out.push(this.encoding === 'gzip' ? gunzipSync(body, options) : inflateSync(body, options));
      return undefined;
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return this.fail({ kind: 'too_large', bytes: this.maxBytes + 1 });
      return this.fail({ kind: 'cannot_decompress', encoding: this.encoding ?? 'identity' });
    }
  }

  private fail(problem: FrameProblem): FrameProblem {
    this.failed = true;
    this.body = undefined;
    this.need = -1;
    this.headFill = 0;
    return problem;
  }
}

/** One uncompressed length-prefixed message. */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, HEADER_BYTES);
  return out;
}
