/**
 * The Node ceiling: a bare `node:http2` server that answers every
 * Authorization/Check with the same pre-encoded OK CheckResponse (gRPC
 * framing by hand, no decoding of the request at all). Nothing written in
 * JavaScript on top of Node's HTTP/2 can be faster than this on one core;
 * bench:check reports the no-op floor and Passgate against it.
 *
 *   node --import tsx bench/check/raw-h2-server.ts --port 50052
 */
import { createServer, constants } from 'node:http2';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { CHECK_PATH } from './protocol.js';

const i = process.argv.indexOf('--port');
const port = Number(i === -1 ? NaN : process.argv[i + 1]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('raw-h2-server: --port <n> is required\n');
  process.exit(2);
}

const OK: CheckResponse = { status: { code: 0 }, ok_response: {} };
const body = loadAuthorizationService().service['Check']!.responseSerialize(OK);
const frame = Buffer.alloc(5 + body.length);
frame.writeUInt32BE(body.length, 1);
body.copy(frame, 5);
const HEADERS = { [constants.HTTP2_HEADER_STATUS]: 200, [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc' };
const TRAILERS = { 'grpc-status': '0' };
const NOT_FOUND = { [constants.HTTP2_HEADER_STATUS]: 200, [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc', 'grpc-status': '12' };

const server = createServer();
server.on('stream', (stream, headers) => {
  if (headers[constants.HTTP2_HEADER_PATH] !== CHECK_PATH) {
    stream.respond(NOT_FOUND, { endStream: true });
    return;
  }
  // The request body is drained and ignored: the answer is fixed.
  stream.on('data', () => undefined);
  stream.on('end', () => {
    // A client whose deadline passed has reset the stream already.
    if (stream.destroyed || stream.closed) return;
    stream.respond(HEADERS, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers(TRAILERS));
    stream.end(frame);
  });
  stream.on('error', () => undefined);
});
server.on('sessionError', () => undefined);
server.listen(port, '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
