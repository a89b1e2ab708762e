/**
 * A raw HTTP/2 gRPC client for the transport tests: exactly the headers, DATA chunks and
 * trailers a test gives, with the status read from headers or trailers, so tests can send
 * what no well-behaved client would (test/transport).
 */
import * as http2 from 'node:http2';
import { CHECK_METHOD_PATH, loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import { frame } from '../../ext-authz/src/transport/framing.js';

const checkDef = loadAuthorizationService().service['Check']!;
const encodeCheck = (r: object): Buffer => checkDef.requestSerialize(r);

export interface RawOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** DATA chunks, written one by one (default: one Check for path /ok). */
  chunks?: Buffer[];
  /** false: the request side is left open. */
  end?: boolean;
  trailers?: Record<string, string>;
  /** How long to wait for the server (then timedOut, and the stream is cancelled); default 2 s. */
  waitMs?: number;
  /** Pause between chunks, so node:http2 sends them as separate DATA frames. */
  gapMs?: number;
}

export interface RawAnswer {
  httpStatus: number;
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  data: Buffer;
  trailers: http2.IncomingHttpHeaders | undefined;
  /** The response HEADERS (for a trailers-only answer, they carry the status too). */
  headers: http2.IncomingHttpHeaders | undefined;
  rstCode?: number;
  timedOut: boolean;
}

/** Length-prefixed messages in a response body. */
export function messagesOf(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at + 5 <= data.length; ) {
    const len = data.readUInt32BE(at + 1);
    out.push(data.subarray(at + 5, at + 5 + len));
    at += 5 + len;
  }
  return out;
}

/** A length-prefixed message with the compressed flag set around already-compressed bytes. */
export function compressedFrame(z: Buffer): Buffer {
  const out = Buffer.alloc(5 + z.length);
  out[0] = 1;
  out.writeUInt32BE(z.length, 1);
  z.copy(out, 5);
  return out;
}

/** One request over its own node:http2 session. */
export function raw(port: number, opts: RawOptions = {}): Promise<RawAnswer> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    const req = session.request(
      { ':method': opts.method ?? 'POST', ':path': opts.path ?? CHECK_METHOD_PATH, 'content-type': 'application/grpc', te: 'trailers', ...opts.headers },
      opts.trailers ? { waitForTrailers: true } : {},
    );
    if (opts.trailers) req.on('wantTrailers', () => req.sendTrailers(opts.trailers!));
    let httpStatus = 0;
    let grpcStatus: number | undefined;
    let grpcMessage: string | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    let headers: http2.IncomingHttpHeaders | undefined;
    const data: Buffer[] = [];
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h['grpc-status'] !== undefined) grpcStatus = Number(h['grpc-status']);
      if (h['grpc-message'] !== undefined) grpcMessage = String(h['grpc-message']);
    };
    let done = false;
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (timedOut) req.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
      if (timedOut) session.destroy();
      resolve({ httpStatus, grpcStatus, grpcMessage, data: Buffer.concat(data), trailers, headers, ...(req.rstCode ? { rstCode: req.rstCode } : {}), timedOut });
    };
    const timer = setTimeout(() => finish(true), opts.waitMs ?? 2_000);
    req.on('response', (h) => {
      httpStatus = Number(h[':status']);
      headers = h;
      take(h);
    });
    req.on('trailers', (h) => {
      trailers = h;
      take(h);
    });
    req.on('data', (c: Buffer) => data.push(c));
    req.on('error', () => undefined);
    req.on('close', () => finish(false));
    const chunks = opts.chunks ?? [frame(encodeCheck(buildCheckRequest({ path: '/ok' })))];
    (async () => {
      for (const c of chunks) {
        if (req.closed) return;
        req.write(c);
        // setImmediate alone lets node:http2 coalesce writes into one DATA frame; a gap keeps them apart.
        await new Promise((r) => (opts.gapMs ? setTimeout(r, opts.gapMs) : setImmediate(r)));
      }
      if (opts.end !== false && !req.closed) req.end();
    })().catch(reject);
  });
}

