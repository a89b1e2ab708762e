/**
 * The lean gRPC transport (ext-authz/src/transport) against real clients over
 * loopback: grpc-js (unary, server streaming, bidi, compression, deadlines,
 * cancellation), raw node:http2 requests for what a well-behaved client never
 * sends, a hand-made HTTP/2 peer that never answers PINGs, and h2load. Every
 * malformed-call case also runs against a grpc-js server hosting the same
 * handlers: the status codes must agree, so switching transports changes no
 * answer a client sees.
 */
import { strict as assert } from 'node:assert';
import * as http2 from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, protoPath } from 'grpc-health-check';
import { loadSync } from '@grpc/proto-loader';
import { CHECK_METHOD_PATH, createAuthorizationClient, loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { createExtProcClient, loadExtProcService, type ProcessingRequest, type ProcessingResponse } from '../../ext-authz/src/e2ee/ext-proc-proto.js';
import { H2GrpcServer } from '../../ext-authz/src/transport/server.js';
import { parseTimeout, encodeMessage } from '../../ext-authz/src/transport/metadata.js';
import { MessageReader, frame } from '../../ext-authz/src/transport/framing.js';
import { compressedFrame, raw } from '../support/h2-raw.js';

const MAX = 64 * 1024;
const execFileAsync = promisify(execFile);
const { service: authService } = loadAuthorizationService();
const checkDef = authService['Check'] as grpc.MethodDefinition<CheckRequest, CheckResponse>;
const encodeCheck = (r: CheckRequest): Buffer => checkDef.requestSerialize(r);
const decodeResponse = (b: Buffer): CheckResponse => checkDef.responseDeserialize(b);

interface Observed {
  deadlines: number[];
  /** Streams whose handler got the x-hang message and now waits. */
  hanging: number;
  cancelled: number;
  streamWritesAfterCancel: number;
}

/** The same handlers for both transports: what a path asks for is what the handler does. */
function handlers(seen: Observed): grpc.UntypedServiceImplementation {
  return {
    Check: (call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) => {
      const path = call.request.attributes?.request?.http?.path ?? '';
      const d = call.getDeadline();
      seen.deadlines.push(d instanceof Date ? d.getTime() : d);
      if (path === '/throw') throw new Error('handler bug');
      if (path === '/md') {
        const md = call.metadata.get('x-md');
        return callback(null, { status: { code: 0 }, ok_response: { headers: [{ header: { key: 'x-md', value: String(md[0] ?? '') } }] } });
      }
      if (path === '/error') return callback({ code: grpc.status.PERMISSION_DENIED, details: 'nicht erlaubt: ü\r\nx-injected: 1', name: 'e', message: 'm' } as grpc.ServiceError, null);
      if (path === '/hang') {
        call.on('cancelled', () => seen.cancelled++);
        return;
      }
      callback(null, { status: { code: 0 }, ok_response: { headers: [{ header: { key: 'x-path', value: path } }] } });
    },
  };
}

function processHandler(seen: Observed): grpc.UntypedServiceImplementation {
  return {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
      let n = 0;
      let hang = false;
      call.on('data', (msg: ProcessingRequest) => {
        n++;
        if (msg.request_headers?.headers?.headers?.some((h) => h.key === 'x-hang')) {
          // Node ends the request side of a reset stream before it says "reset": a handler that
          // ended its stream on 'end' has answered by then. This one keeps it open, so it sees the reset.
          hang = true;
          seen.hanging++;
          call.on('cancelled', () => {
            seen.cancelled++;
            // Writing after the client went away must neither throw nor raise an unhandled error.
            call.write({ request_headers: { response: { status: 0 } } } as ProcessingResponse);
            seen.streamWritesAfterCancel++;
          });
          return;
        }
        call.write({ request_headers: { response: { header_mutation: { set_headers: [{ header: { key: 'x-n', raw_value: Buffer.from(String(n)) } }] } } } } as ProcessingResponse);
      });
      call.on('end', () => hang || call.end());
      call.on('error', () => undefined);
    },
  };
}

interface Running {
  port: number;
  seen: Observed;
  health: HealthImplementation;
  stop(): Promise<void>;
}

async function startH2(options: Partial<ConstructorParameters<typeof H2GrpcServer>[0]> = {}): Promise<Running & { server: H2GrpcServer }> {
  const seen: Observed = { deadlines: [], hanging: 0, cancelled: 0, streamWritesAfterCancel: 0 };
  const server = new H2GrpcServer({ maxMessageBytes: MAX, onHandlerError: () => undefined, ...options });
  server.addService(authService, handlers(seen));
  server.addService(loadExtProcService().service, processHandler(seen));
  const health = new HealthImplementation({ '': 'SERVING' });
  health.addToServer(server as unknown as grpc.Server);
  const port = await server.listen('127.0.0.1', 0);
  return { port, seen, health, server, stop: () => new Promise<void>((r) => { server.forceShutdown(); r(); }) };
}

async function startGrpcJs(): Promise<Running> {
  const seen: Observed = { deadlines: [], hanging: 0, cancelled: 0, streamWritesAfterCancel: 0 };
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX });
  server.addService(authService, handlers(seen));
  server.addService(loadExtProcService().service, processHandler(seen));
  const health = new HealthImplementation({ '': 'SERVING' });
  health.addToServer(server);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return { port, seen, health, stop: async () => server.forceShutdown() };
}

function checkCall(port: number, req: CheckRequest, options: grpc.CallOptions = {}): Promise<{ err: grpc.ServiceError | null; res?: CheckResponse }> {
  const client = createAuthorizationClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.Check(req, new grpc.Metadata(), options, (err, res) => {
      client.close();
      resolve({ err, ...(res ? { res } : {}) });
    });
  });
}

const gz = (b: Buffer) => compressedFrame(gzipSync(b));

/** Malformed or unusual calls, each answered the same way (status code) by both transports. */
const MALFORMED: Array<{ name: string; opts: Parameters<typeof raw>[1]; expect: { http?: number; grpc?: number } }> = [
  { name: 'an unknown method', opts: { path: '/envoy.service.auth.v3.Authorization/Nope' }, expect: { grpc: grpc.status.UNIMPLEMENTED } },
  { name: 'a content-type that is not gRPC', opts: { headers: { 'content-type': 'application/json' } }, expect: { http: 415 } },
  { name: 'a message over the receive limit', opts: { chunks: [frame(encodeCheck(buildCheckRequest({ path: '/big', headers: { 'x-big': 'a'.repeat(MAX) } })))] }, expect: { grpc: grpc.status.RESOURCE_EXHAUSTED } },
  { name: 'a length prefix over the limit with no body yet', opts: { chunks: [Buffer.from([0, 0x7f, 0xff, 0xff, 0xff])] }, expect: { grpc: grpc.status.RESOURCE_EXHAUSTED } },
  { name: 'a compressed flag without grpc-encoding', opts: { chunks: [gz(encodeCheck(buildCheckRequest({ path: '/gz' })))] }, expect: { grpc: grpc.status.INTERNAL } },
  { name: 'a gzip message that expands past the limit', opts: { headers: { 'grpc-encoding': 'gzip' }, chunks: [gz(encodeCheck(buildCheckRequest({ path: '/bomb', headers: { 'x-pad': 'a'.repeat(4 * MAX) } })))] }, expect: { grpc: grpc.status.RESOURCE_EXHAUSTED } },
  { name: 'a message compressed with an encoding nobody supports', opts: { headers: { 'grpc-encoding': 'snappy' }, chunks: [gz(encodeCheck(buildCheckRequest({ path: '/snappy' })))] }, expect: { grpc: grpc.status.UNIMPLEMENTED } },
  { name: 'a stream that ends inside a message', opts: { chunks: [frame(encodeCheck(buildCheckRequest({ path: '/cut' }))).subarray(0, 12)] }, expect: { grpc: grpc.status.UNIMPLEMENTED } },
  { name: 'no message at all', opts: { chunks: [] }, expect: { grpc: grpc.status.UNIMPLEMENTED } },
  { name: 'bytes that are not a CheckRequest', opts: { chunks: [frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]))] }, expect: { grpc: grpc.status.INTERNAL } },
  { name: 'a handler that throws', opts: { chunks: [frame(encodeCheck(buildCheckRequest({ path: '/throw' })))] }, expect: { grpc: grpc.status.UNKNOWN } },
];

describe('lean gRPC transport (issue 18)', function () {
  this.timeout(30_000);
  let h2: Running & { server: H2GrpcServer };
  let js: Running;
  before(async () => {
    h2 = await startH2();
    js = await startGrpcJs();
  });
  after(async () => {
    await h2.stop();
    await js.stop();
  });

  it('answers a grpc-js client: unary Check, the response decoded field by field', async () => {
    const { err, res } = await checkCall(h2.port, buildCheckRequest({ path: '/hello' }));
    assert.equal(err, null);
    assert.deepEqual(res?.ok_response?.headers?.map((h) => [h.header?.key, h.header?.value]), [['x-path', '/hello']]);
  });

  for (const c of MALFORMED) {
    it(`${c.name}: the same answer as grpc-js`, async () => {
      const [ours, theirs] = [await raw(h2.port, c.opts), await raw(js.port, c.opts)];
      if (c.expect.http !== undefined) {
        assert.equal(ours.httpStatus, c.expect.http);
        assert.equal(theirs.httpStatus, c.expect.http);
      } else {
        assert.equal(ours.httpStatus, 200);
        assert.equal(ours.grpcStatus, c.expect.grpc, `ours: ${ours.grpcStatus} ${ours.grpcMessage}`);
        assert.equal(theirs.grpcStatus, c.expect.grpc, `grpc-js: ${theirs.grpcStatus} ${theirs.grpcMessage}`);
        assert.ok(ours.grpcMessage, 'a status other than OK says why');
        // Every status answer names the encodings we take (a client refused for its encoding learns which to use).
        assert.equal((ours.trailers ?? ours.headers)?.['grpc-accept-encoding'] ?? ours.headers?.['grpc-accept-encoding'], 'identity,deflate,gzip');
      }
      // Whatever the request did, the server still answers the next one.
      assert.equal((await checkCall(h2.port, buildCheckRequest({ path: '/after' }))).err, null);
    });
  }

  it('a grpc-encoding header alone (the message not compressed) is no reason to refuse, as in grpc-js', async () => {
    for (const port of [h2.port, js.port]) assert.equal((await raw(port, { headers: { 'grpc-encoding': 'snappy' } })).grpcStatus, 0);
  });

  it('call metadata: a header grpc-js would refuse as a key is skipped, the others are there', async () => {
    const ours = await raw(h2.port, { headers: { 'x-md': 'hello', 'x-odd!key': '1' }, chunks: [frame(encodeCheck(buildCheckRequest({ path: '/md' })))] });
    assert.equal(ours.grpcStatus, 0);
    assert.equal(decodeResponse(ours.data.subarray(5)).ok_response?.headers?.[0]?.header?.value, 'hello');
  });

  it('advertises a bound on concurrent streams per connection (SETTINGS)', async () => {
    const session = http2.connect(`http://127.0.0.1:${h2.port}`);
    await new Promise<void>((r) => session.once('remoteSettings', () => r()));
    assert.equal(session.remoteSettings.maxConcurrentStreams, 1000);
    session.close();
  });

  it('an HTTP/1.1 request on the gRPC port is dropped; the server keeps serving', async () => {
    const socket = tcpConnect(h2.port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.resume();
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((r) => socket.on('close', () => r()));
    assert.equal((await checkCall(h2.port, buildCheckRequest({ path: '/after-http1' }))).err, null);
  });

  it('client text quoted in a status message is clipped (a 10 KB path or grpc-timeout makes no 10 KB trailer)', async () => {
    const path = await raw(h2.port, { path: `/envoy.service.auth.v3.Authorization/${'x'.repeat(10_000)}` });
    assert.equal(path.grpcStatus, grpc.status.UNIMPLEMENTED);
    assert.ok((path.grpcMessage ?? '').length < 400, `${path.grpcMessage?.length} characters`);
    const timeout = await raw(h2.port, { headers: { 'grpc-timeout': `1${'x'.repeat(10_000)}` } });
    assert.equal(timeout.grpcStatus, grpc.status.INTERNAL);
    assert.ok((timeout.grpcMessage ?? '').length < 400, `${timeout.grpcMessage?.length} characters`);
  });

  it('a method other than POST is refused with HTTP 405', async () => {
    const ours = await raw(h2.port, { method: 'GET', chunks: [], end: true });
    assert.equal(ours.httpStatus, 405);
  });

  it('two request messages on a unary call are refused (UNIMPLEMENTED, as grpc-js) and the handler never runs', async () => {
    const before = h2.seen.deadlines.length;
    const one = frame(encodeCheck(buildCheckRequest({ path: '/twice' })));
    const ours = await raw(h2.port, { chunks: [Buffer.concat([one, one])] });
    assert.equal(ours.grpcStatus, grpc.status.UNIMPLEMENTED);
    assert.equal(h2.seen.deadlines.length, before);
  });

  it('a message split into one-byte DATA frames, and two messages sharing frames on a stream, are reassembled', async () => {
    const bytes = frame(encodeCheck(buildCheckRequest({ path: '/bytewise', headers: { 'x-a': 'b'.repeat(300) } })));
    const ours = await raw(h2.port, { chunks: [...bytes].map((b) => Buffer.from([b])) });
    assert.equal(ours.grpcStatus, 0);
    assert.equal(ours.data.readUInt32BE(1), ours.data.length - 5);
    const res = decodeResponse(ours.data.subarray(5));
    assert.equal(res.ok_response?.headers?.[0]?.header?.value, '/bytewise');

    const reader = new MessageReader(1024, undefined);
    const out: Buffer[] = [];
    const two = Buffer.concat([frame(Buffer.from('first')), frame(Buffer.from('second'))]);
    assert.equal(reader.push(two.subarray(0, 7), out), undefined);
    assert.equal(reader.push(two.subarray(7), out), undefined);
    assert.deepEqual(out.map(String), ['first', 'second']);
    assert.ok(reader.atBoundary);
  });

  it('the message reader gives the same messages for any split of the bytes, and a message spanning chunks is its own copy (no read buffer kept)', () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    for (let round = 0; round < 200; round++) {
      const messages = Array.from({ length: 1 + rand(5) }, () => Buffer.alloc(rand(4) === 0 ? 0 : rand(40_000), rand(256)));
      const wire = Buffer.concat(messages.map((m) => frame(m)));
      const reader = new MessageReader(64 * 1024, undefined);
      const out: Buffer[] = [];
      const chunks: Buffer[] = [];
      for (let at = 0; at < wire.length; ) {
        const size = round % 10 === 0 ? 1 : 1 + rand(rand(2) === 0 ? 8 : 20_000);
        // Each chunk a slice of a larger buffer, as node:http2 hands DATA frames over.
        const host = Buffer.alloc(size + 64);
        wire.copy(host, 32, at, Math.min(at + size, wire.length));
        chunks.push(host.subarray(32, 32 + Math.min(size, wire.length - at)));
        at += size;
      }
      for (const c of chunks) assert.equal(reader.push(c, out), undefined);
      assert.equal(out.length, messages.length, `round ${round}`);
      for (let i = 0; i < messages.length; i++) {
        assert.ok(out[i]!.equals(messages[i]!), `round ${round} message ${i}`);
        // A view is only ever of a chunk that held the whole message; otherwise the bytes are the reader's own.
        if (out[i]!.length > 0 && !chunks.some((c) => c.buffer === out[i]!.buffer)) assert.ok(out[i]!.buffer.byteLength <= Math.max(out[i]!.length, 16 * 1024) * 2 + 8192, 'an own buffer of about the message size');
      }
      assert.ok(reader.atBoundary);
    }
    // 200,000 one-byte chunks: every byte once, the result right (this was a quadratic join).
    const big = Buffer.alloc(200_000, 0x61);
    const reader = new MessageReader(1 << 20, undefined);
    const out: Buffer[] = [];
    const wire = frame(big);
    for (let i = 0; i < wire.length; i++) reader.push(wire.subarray(i, i + 1), out);
    assert.equal(out.length, 1);
    assert.ok(out[0]!.equals(big));
  });

  it('a gzip-compressed request (grpc-js client compression) is answered', async () => {
    const Client = grpc.makeGenericClientConstructor(authService, 'Authorization');
    const client = new Client(`127.0.0.1:${h2.port}`, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 });
    const { err, res } = await new Promise<{ err: grpc.ServiceError | null; res?: CheckResponse }>((resolve) =>
      (client as unknown as { Check(r: CheckRequest, cb: (e: grpc.ServiceError | null, r?: CheckResponse) => void): void }).Check(
        buildCheckRequest({ path: '/compressed', headers: { 'x-pad': 'z'.repeat(4000) } }),
        (e, r) => resolve({ err: e, ...(r ? { res: r } : {}) }),
      ),
    );
    client.close();
    assert.equal(err, null);
    assert.equal(res?.ok_response?.headers?.[0]?.header?.value, '/compressed');
    const viaGzip = await raw(h2.port, { headers: { 'grpc-encoding': 'gzip' }, chunks: [gz(encodeCheck(buildCheckRequest({ path: '/gz-ok' })))] });
    assert.equal(viaGzip.grpcStatus, 0);
    assert.equal(decodeResponse(viaGzip.data.subarray(5)).ok_response?.headers?.[0]?.header?.value, '/gz-ok');
  });

  it('a status message is percent-encoded: no CR/LF or non-ASCII byte reaches a header', async () => {
    const { err } = await checkCall(h2.port, buildCheckRequest({ path: '/error' }));
    assert.equal(err?.code, grpc.status.PERMISSION_DENIED);
    assert.equal(err?.details, 'nicht erlaubt: ü\r\nx-injected: 1', 'the client decodes it back');
    const ours = await raw(h2.port, { chunks: [frame(encodeCheck(buildCheckRequest({ path: '/error' })))] });
    assert.equal(ours.grpcMessage, 'nicht erlaubt: %C3%BC%0D%0Ax-injected: 1');
    assert.equal(encodeMessage('100% sure'), '100%25 sure');
  });

  it('grpc-timeout becomes the deadline the handler sees; a malformed one is refused like grpc-js does', async () => {
    const t0 = Date.now();
    await raw(h2.port, { headers: { 'grpc-timeout': '150m' } });
    const d = h2.seen.deadlines.at(-1)!;
    assert.ok(d >= t0 + 140 && d <= Date.now() + 150, `deadline ${d - t0} ms after the send`);
    await raw(h2.port);
    assert.equal(h2.seen.deadlines.at(-1), Infinity, 'no grpc-timeout: no deadline');
    for (const bad of ['150', '10x', 'S']) {
      const [ours, theirs] = [await raw(h2.port, { headers: { 'grpc-timeout': bad } }), await raw(js.port, { headers: { 'grpc-timeout': bad } })];
      assert.equal(ours.grpcStatus, grpc.status.INTERNAL, `grpc-timeout ${bad}: ours ${ours.grpcStatus}`);
      assert.equal(theirs.grpcStatus, grpc.status.INTERNAL, `grpc-timeout ${bad}: grpc-js ${theirs.grpcStatus}`);
    }
    // grpc-js matches its pattern anywhere in the value (1.5S reads as 5 s); the spec's grammar is the whole value, and we hold to it.
    for (const sloppy of ['1.5S', '123456789S', '-1m', '5 S']) {
      const ours = await raw(h2.port, { headers: { 'grpc-timeout': sloppy } });
      assert.equal(ours.grpcStatus, grpc.status.INTERNAL, `grpc-timeout ${JSON.stringify(sloppy)}: ours ${ours.grpcStatus}`);
      assert.match(ours.grpcMessage ?? '', /grpc-timeout/);
    }
    assert.deepEqual([parseTimeout('2H'), parseTimeout('3M'), parseTimeout('4S'), parseTimeout('5m'), parseTimeout('6000u'), parseTimeout('7000000n')], [7_200_000, 180_000, 4_000, 5, 6, 7]);
    assert.equal(parseTimeout(undefined), undefined);
  });

  it('a client that gives up (deadline) cancels the call: the handler sees it and the server stays up', async () => {
    const before = h2.seen.cancelled;
    const { err } = await checkCall(h2.port, buildCheckRequest({ path: '/hang' }), { deadline: Date.now() + 100 });
    assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
    for (let i = 0; i < 50 && h2.seen.cancelled === before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(h2.seen.cancelled, before + 1);
    assert.equal((await checkCall(h2.port, buildCheckRequest({ path: '/after-hang' }))).err, null);
  });

  it('bidi streaming (ext_proc Process): messages in order, the stream ends with OK', async () => {
    const client = createExtProcClient(`127.0.0.1:${h2.port}`);
    const stream = client.Process();
    const got: string[] = [];
    stream.on('data', (m: ProcessingResponse) => got.push(Buffer.from(m.request_headers?.response?.header_mutation?.set_headers?.[0]?.header?.raw_value ?? []).toString()));
    const status = new Promise<grpc.StatusObject>((r) => stream.on('status', r));
    for (let i = 0; i < 200; i++) stream.write({ request_headers: { headers: { headers: [{ key: 'x-i', raw_value: Buffer.from(String(i)) }] } } } as ProcessingRequest);
    stream.end();
    assert.equal((await status).code, grpc.status.OK);
    client.close();
    assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => String(i + 1)));
  });

  it('a bidi stream the client cancels: the handler sees cancelled, its later writes are dropped without an error', async () => {
    const [before, hanging] = [h2.seen.cancelled, h2.seen.hanging];
    const client = createExtProcClient(`127.0.0.1:${h2.port}`);
    const stream = client.Process();
    stream.on('error', () => undefined);
    stream.write({ request_headers: { headers: { headers: [{ key: 'x-hang', raw_value: Buffer.from('1') }] } } } as ProcessingRequest);
    for (let i = 0; i < 100 && h2.seen.hanging === hanging; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(h2.seen.hanging, hanging + 1, 'the handler got the message');
    stream.cancel();
    for (let i = 0; i < 50 && h2.seen.cancelled === before; i++) await new Promise((r) => setTimeout(r, 20));
    client.close();
    assert.equal(h2.seen.cancelled, before + 1);
    assert.ok(h2.seen.streamWritesAfterCancel >= 1);
    assert.equal((await checkCall(h2.port, buildCheckRequest({ path: '/after-cancel' }))).err, null);
  });

  it('bidi: an undecodable message between good ones ends the call INTERNAL; later bytes raise nothing (the handler has no error listener)', async () => {
    const server = new H2GrpcServer({ maxMessageBytes: MAX });
    let got = 0;
    server.addService(loadExtProcService().service, {
      Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
        // Answering first puts the status in trailers (the reset that stops the client follows a tick later).
        call.on('data', () => {
          got++;
          call.write({ request_headers: { response: {} } } as ProcessingResponse);
        });
      },
    });
    const port = await server.listen('127.0.0.1', 0);
    try {
      const good = frame(loadExtProcService().service['Process']!.requestSerialize({ request_headers: { headers: { headers: [] } } }));
      const garbage = frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]));
      const ours = await raw(port, { path: '/envoy.service.ext_proc.v3.ExternalProcessor/Process', chunks: [good, Buffer.concat([garbage, good]), good, good, good] });
      assert.equal(ours.grpcStatus, grpc.status.INTERNAL);
      assert.equal(got, 1, 'only the message before the bad one reached the handler');
    } finally {
      server.forceShutdown();
    }
  });

  it('a bidi stream past its grpc-timeout ends with DEADLINE_EXCEEDED from the server', async () => {
    const ours = await raw(h2.port, {
      path: '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
      headers: { 'grpc-timeout': '200m' },
      chunks: [frame(loadExtProcService().service['Process']!.requestSerialize({ request_headers: { headers: { headers: [{ key: 'x-hang', raw_value: Buffer.from('1') }] } } }))],
      end: false,
    });
    // The grpc-js client would report its own DEADLINE_EXCEEDED; the raw client shows the server's.
    assert.equal(ours.grpcStatus, grpc.status.DEADLINE_EXCEEDED);
  });

  it('server streaming (health Watch): the current status, then every change, until cancelled', async () => {
    const port = h2.port;
    const pkg = grpc.loadPackageDefinition(loadSync(protoPath, { enums: String })) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
    const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
    };
    const call = client.watch({ service: '' });
    call.on('error', () => undefined);
    const statuses: string[] = [];
    call.on('data', (m: { status: string }) => statuses.push(m.status));
    for (let i = 0; i < 50 && statuses.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    h2.health.setStatus('', 'NOT_SERVING');
    h2.health.setStatus('', 'SERVING');
    for (let i = 0; i < 50 && statuses.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    call.cancel();
    client.close();
    assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING', 'SERVING']);
  });

  it('sends keepalive PINGs, and closes a session whose peer never answers one', async () => {
    const ka = await startH2({ keepaliveTimeMs: 50, keepaliveTimeoutMs: 150 });
    try {
      // A client that answers (node:http2 acknowledges PINGs itself) sees them and keeps its session.
      const session = http2.connect(`http://127.0.0.1:${ka.port}`);
      let pings = 0;
      session.on('ping', () => pings++);
      await new Promise((r) => setTimeout(r, 400));
      assert.ok(pings >= 2, `pings seen: ${pings}`);
      assert.equal(session.destroyed, false);
      session.close();
      // A hand-made peer: the HTTP/2 preface and an empty SETTINGS frame, then silence.
      const socket = tcpConnect(ka.port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.resume(); // read (and drop) what the server sends, so its FIN is seen
      socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
      const started = Date.now();
      await new Promise<void>((r) => socket.on('close', () => r()));
      const lived = Date.now() - started;
      assert.ok(lived >= 150 && lived < 5_000, `closed after ${lived} ms`);
    } finally {
      await ka.stop();
    }
  });

  it('graceful shutdown: GOAWAY, the running call is answered, the listener closes', async () => {
    const g = await startH2();
    const session = http2.connect(`http://127.0.0.1:${g.port}`);
    session.on('error', () => undefined);
    const goaway = new Promise<void>((r) => session.on('goaway', () => r()));
    // A call in flight when the shutdown starts: slow to arrive (body sent after the shutdown).
    const req = session.request({ ':method': 'POST', ':path': CHECK_METHOD_PATH, 'content-type': 'application/grpc', te: 'trailers' });
    let status: string | undefined;
    req.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
    req.on('trailers', (h) => (status = h['grpc-status'] as string));
    req.on('data', () => undefined);
    const closed = new Promise<void>((r) => req.on('close', () => r()));
    await new Promise((r) => setTimeout(r, 50));
    const down = new Promise<void>((r) => g.server.tryShutdown(() => r()));
    await goaway;
    req.end(frame(encodeCheck(buildCheckRequest({ path: '/late' }))));
    await closed;
    assert.equal(status, '0');
    await down;
    const refused = await new Promise<boolean>((r) => {
      const s = tcpConnect(g.port, '127.0.0.1');
      s.on('connect', () => (s.destroy(), r(false)));
      s.on('error', () => r(true));
    });
    assert.equal(refused, true, 'the port no longer accepts connections');
  });

  it('h2load: 4,000 multiplexed Checks over 4 connections, every one answered 200 with a message', async function () {
    const probe = spawnSync('h2load', ['--version']);
    assert.equal(probe.error, undefined, 'h2load is needed (apt-get install nghttp2-client; .ci/run installs it)');
    const dir = mkdtempSync(join(tmpdir(), 'pg-h2load-'));
    const body = join(dir, 'check.bin');
    writeFileSync(body, frame(encodeCheck(buildCheckRequest({ path: '/h2load' }))));
    // Asynchronously: the server runs in this process.
    const { stdout: out } = await execFileAsync('h2load', ['-n', '4000', '-c', '4', '-m', '32', '-d', body, '-H', 'content-type: application/grpc', '-H', 'te: trailers', `http://127.0.0.1:${h2.port}${CHECK_METHOD_PATH}`]);
    assert.match(out, /requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored/);
    assert.match(out, /status codes: 4000 2xx/);
  });
});
