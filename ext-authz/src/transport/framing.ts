/**
 * gRPC length-prefixed messages over an HTTP/2 stream (the "Length-Prefixed-Message"
 * of https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): one flag byte
 * (1 = compressed with the stream's `grpc-encoding`), a 4-byte big-endian length,
 * then the message. DATA frames split and join messages freely, so the reader is
 * incremental; it never holds more than one message plus one header.
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

/**
 * Splits incoming chunks into whole messages. `push` returns the messages that
 * completed (usually the one a chunk carries, without copying it) or a problem;
 * after a problem the reader is done and takes nothing more.
 */
export class MessageReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Length of the message being collected, -1 while its header is incomplete. */
  private need = -1;
  private flag = 0;
  private failed = false;

  constructor(
    private readonly maxBytes: number,
    private readonly encoding: string | undefined,
  ) {}

  /** True when no partial message is buffered (the stream may end here). */
  get atBoundary(): boolean {
    return this.pendingBytes === 0 && this.need === -1;
  }

  push(chunk: Buffer, out: Buffer[]): FrameProblem | undefined {
    if (this.failed) return undefined;
    // Fast path: nothing buffered and the chunk holds exactly one whole message.
    if (this.pendingBytes === 0 && this.need === -1 && chunk.length >= HEADER_BYTES) {
      const len = chunk.readUInt32BE(1);
      if (chunk.length === HEADER_BYTES + len) {
        const problem = this.check(chunk[0]!, len);
        if (problem) return problem;
        return this.emit(chunk[0]!, chunk.subarray(HEADER_BYTES), out);
      }
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    for (;;) {
      if (this.need === -1) {
        if (this.pendingBytes < HEADER_BYTES) return undefined;
        const head = this.take(HEADER_BYTES);
        const len = head.readUInt32BE(1);
        const problem = this.check(head[0]!, len);
        if (problem) return problem;
        this.flag = head[0]!;
        this.need = len;
      }
      if (this.pendingBytes < this.need) return undefined;
      // A zero-length message is legal (an empty CheckRequest) and may end exactly where the bytes do.
      const body = this.need === 0 ? EMPTY : this.take(this.need);
      this.need = -1;
      const problem = this.emit(this.flag, body, out);
      if (problem) return problem;
    }
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
    this.pending = [];
    this.pendingBytes = 0;
    return problem;
  }

  /** Removes and returns the first `n` buffered bytes (0 < n ≤ pendingBytes). */
  private take(n: number): Buffer {
    const first = this.pending[0]!;
    if (first.length === n) {
      this.pending.shift();
      this.pendingBytes -= n;
      return first;
    }
    if (first.length > n) {
      this.pending[0] = first.subarray(n);
      this.pendingBytes -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const head = this.pending[0]!;
      const part = Math.min(head.length, n - at);
      head.copy(out, at, 0, part);
      at += part;
      if (part === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(part);
    }
    this.pendingBytes -= n;
    return out;
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
