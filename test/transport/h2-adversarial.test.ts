/**
 * Adversarial cases for the lean gRPC transport (ext-authz/src/transport): what a
 * peer with direct access to the port, or Envoy under load, can send. Each case
 * runs against a real H2GrpcServer over loopback; where the expectation is
 * "as grpc-js", the same raw request also goes to a grpc-js server hosting the
 * same handlers. Helpers are copied from h2-server.test.ts (not imported).
 */
import { strict as assert } from 'node:assert';
import * as http2 from 'node:http2';
import { deflateSync, gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { CHECK_METHOD_PATH, loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { loadExtProcService, type ProcessingRequest, type ProcessingResponse } from '../../ext-authz/src/e2ee/ext-proc-proto.js';
import { H2GrpcServer } from '../../ext-authz/src/transport/server.js';
import { frame } from '../../ext-authz/src/transport/framing.js';
import { compressedFrame, messagesOf, raw, type RawAnswer } from '../support/h2-raw.js';

const MAX = 16 * 1024;
const PROCESS_PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
const WATCH_PATH = '/grpc.health.v1.Health/Watch';
const { service: authService } = loadAuthorizationService();
const processService = loadExtProcService().service;
const checkDef = authService['Check'] as grpc.MethodDefinition<CheckRequest, CheckResponse>;
const processDef = processService['Process'] as grpc.MethodDefinition<ProcessingRequest, ProcessingResponse>;
const encodeCheck = (r: CheckRequest): Buffer => checkDef.requestSerialize(r);
const decodeResponse = (b: Buffer): CheckResponse => checkDef.responseDeserialize(b);
const encodeProcess = (r: ProcessingRequest): Buffer => processDef.requestSerialize(r);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Seen {
  checks: number;
  cancelled: number;
  processCancelled: number;
}

function checkHandlers(seen: Seen): grpc.UntypedServiceImplementation {
  return {
    Check: (call: grpc.ServerUnaryCall<CheckRequest, CheckResponse>, callback: grpc.sendUnaryData<CheckResponse>) => {
      seen.checks++;
      const path = call.request.attributes?.request?.http?.path ?? '';
      if (path === '/hang') {
        call.on('cancelled', () => seen.cancelled++);
        return;
      }
      callback(null, { status: { code: 0 }, ok_response: { headers: [{ header: { key: 'x-path', value: path } }] } });
    },
  };
}

/** The bidi handler; what it does is chosen by the x-mode request header. */
function processHandlers(seen: Seen): grpc.UntypedServiceImplementation {
  return {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
      const mode = String(call.metadata.get('x-mode')[0] ?? 'echo');
      call.on('error', () => undefined);
      call.on('cancelled', () => seen.processCancelled++);
      let n = 0;
      call.on('data', () => {
        n++;
        if (mode === 'big') {
          // A response bigger than the *receive* limit (grpc-js has no send limit by default).
          call.write({ request_body: { response: { body_mutation: { body: Buffer.alloc(MAX + 1024, 0x61) } } } } as ProcessingResponse);
          return;
        }
        if (mode === 'end-metadata') {
          // grpc-js' ServerDuplexStream#end(metadata): trailing metadata, not a message.
          const md = new grpc.Metadata();
          md.set('x-trailer', 'yes');
          (call as unknown as { end(m: grpc.Metadata): void }).end(md);
          return;
        }
        call.write({ request_headers: { response: { header_mutation: { set_headers: [{ header: { key: 'x-n', raw_value: Buffer.from(String(n)) } }] } } } } as ProcessingResponse);
      });
      call.on('end', () => {
        if (mode !== 'end-metadata') call.end();
      });
    },
  };
}

interface Running {
  port: number;
  seen: Seen;
  health: HealthImplementation;
  stop(): void;
}

async function startH2(options: Partial<ConstructorParameters<typeof H2GrpcServer>[0]> = {}): Promise<Running & { server: H2GrpcServer }> {
  const seen: Seen = { checks: 0, cancelled: 0, processCancelled: 0 };
  const server = new H2GrpcServer({ maxMessageBytes: MAX, onHandlerError: () => undefined, ...options });
  server.addService(authService, checkHandlers(seen));
  server.addService(processService, processHandlers(seen));
  const health = new HealthImplementation({ '': 'SERVING' });
  health.addToServer(server as unknown as grpc.Server);
  const port = await server.listen('127.0.0.1', 0);
  return { port, seen, health, server, stop: () => server.forceShutdown() };
}

async function startGrpcJs(): Promise<Running & { server: grpc.Server }> {
  const seen: Seen = { checks: 0, cancelled: 0, processCancelled: 0 };
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX });
  server.addService(authService, checkHandlers(seen));
  server.addService(processService, processHandlers(seen));
  const health = new HealthImplementation({ '': 'SERVING' });
  health.addToServer(server);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return { port, seen, health, server, stop: () => server.forceShutdown() };
}

function okCheck(port: number): Promise<RawAnswer> {
  return raw(port, { chunks: [frame(encodeCheck(buildCheckRequest({ path: '/alive' })))] });
}

const compressed = compressedFrame;

/**
 * Runs `run` with process-level uncaught exceptions captured instead of failing
 * the run (a throw inside a node:http2 'data' listener lands there); mocha's own
 * listeners are put back afterwards.
 */
async function capturingUncaught<T>(run: () => Promise<T>): Promise<{ value: T; uncaught: Error[] }> {
  const saved = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const uncaught: Error[] = [];
  const catcher = (e: Error) => uncaught.push(e);
  process.on('uncaughtException', catcher);
  try {
    return { value: await run(), uncaught };
  } finally {
    process.off('uncaughtException', catcher);
    for (const l of saved) process.on('uncaughtException', l);
  }
}

const noThrow = (uncaught: Error[]) =>
  assert.deepEqual(uncaught.map((e) => e.stack?.split('\n').slice(0, 2).join(' ')), [], 'the server threw out of a node:http2 listener');

const EMPTY = frame(Buffer.alloc(0)); // a zero-length message: 5 header bytes, no body
const headersMsg = (key: string) => frame(encodeProcess({ request_headers: { headers: { headers: [{ key, raw_value: Buffer.from('1') }] } } } as ProcessingRequest));

describe('lean gRPC transport: adversarial peers', function () {
  this.timeout(5_000);
  let h2: Running & { server: H2GrpcServer };
  let js: Running & { server: grpc.Server };
  const extra: Array<() => void> = [];
  beforeEach(async () => {
    h2 = await startH2();
    js = await startGrpcJs();
  });
  afterEach(() => {
    h2.stop();
    js.stop();
    for (const f of extra.splice(0)) f();
  });

  describe('framing', () => {
    it('a zero-length unary request (empty CheckRequest) in one DATA frame is answered OK, as grpc-js', async () => {
      const [ours, theirs] = [await raw(h2.port, { chunks: [EMPTY] }), await raw(js.port, { chunks: [EMPTY] })];
      assert.equal(theirs.grpcStatus, 0);
      assert.equal(ours.grpcStatus, 0);
    });

    it('a unary request without grpc-timeout that never finishes arriving is ended DEADLINE_EXCEEDED after requestArrivalMs (its partial message is not held for ever)', async () => {
      const slow = await startH2({ requestArrivalMs: 300 });
      extra.push(slow.stop);
      const whole = frame(Buffer.alloc(1000, 1));
      const r = await raw(slow.port, { chunks: [whole.subarray(0, 100)], end: false, waitMs: 3_000 });
      assert.equal(r.timedOut, false, 'answered before the client gave up');
      assert.equal(r.grpcStatus, grpc.status.DEADLINE_EXCEEDED, `${r.grpcStatus} ${r.grpcMessage}`);
      assert.match(r.grpcMessage ?? '', /did not arrive within 300 ms/);
      assert.equal(slow.seen.checks, 0, 'the handler never ran');
      // A request that arrives in time is answered as before.
      assert.equal((await raw(slow.port, { chunks: [EMPTY] })).grpcStatus, 0);
    });

    it('a zero-length unary request whose 5-byte header is split across two DATA frames: answered OK, nothing thrown', async () => {
      const chunks = [EMPTY.subarray(0, 2), EMPTY.subarray(2)];
      const theirs = await raw(js.port, { chunks, gapMs: 20 });
      assert.equal(theirs.grpcStatus, 0);
      const { value: ours, uncaught } = await capturingUncaught(() => raw(h2.port, { chunks, gapMs: 20 }));
      noThrow(uncaught);
      assert.equal(ours.grpcStatus, 0, `ours: ${ours.grpcStatus} ${ours.grpcMessage} timedOut=${ours.timedOut}`);
    });

    it('a unary message followed by a zero-length message in one DATA frame: refused, nothing thrown, handler not run', async () => {
      const chunks = [Buffer.concat([frame(encodeCheck(buildCheckRequest({ path: '/x' }))), EMPTY])];
      const { value: ours, uncaught } = await capturingUncaught(() => raw(h2.port, { chunks }));
      noThrow(uncaught);
      assert.ok(ours.grpcStatus !== undefined && ours.grpcStatus !== 0, `ours: ${ours.grpcStatus} timedOut=${ours.timedOut}`);
      assert.equal(h2.seen.checks, 0);
    });

    it('two request messages on a unary call: the same status as grpc-js (UNIMPLEMENTED)', async () => {
      const one = frame(encodeCheck(buildCheckRequest({ path: '/twice' })));
      const [ours, theirs] = [await raw(h2.port, { chunks: [Buffer.concat([one, one])] }), await raw(js.port, { chunks: [Buffer.concat([one, one])] })];
      assert.equal(theirs.grpcStatus, grpc.status.UNIMPLEMENTED);
      assert.equal(ours.grpcStatus, grpc.status.UNIMPLEMENTED, `ours: ${ours.grpcStatus} ${ours.grpcMessage}`);
    });

    it('bidi: two zero-length messages in one DATA frame are two messages, nothing thrown', async () => {
      const chunks = [Buffer.concat([EMPTY, EMPTY])];
      const theirs = await raw(js.port, { path: PROCESS_PATH, chunks });
      assert.equal(theirs.grpcStatus, 0);
      assert.equal(messagesOf(theirs.data).length, 2);
      const { value: ours, uncaught } = await capturingUncaught(() => raw(h2.port, { path: PROCESS_PATH, chunks }));
      noThrow(uncaught);
      assert.equal(ours.grpcStatus, 0, `ours: ${ours.grpcStatus} ${ours.grpcMessage} timedOut=${ours.timedOut}`);
      assert.equal(messagesOf(ours.data).length, 2);
    });

    it('bidi: a zero-length message split 1+4 bytes across DATA frames, then a normal message: both arrive, nothing thrown', async () => {
      const chunks = [EMPTY.subarray(0, 1), EMPTY.subarray(1), headersMsg('x-a')];
      const { value: ours, uncaught } = await capturingUncaught(() => raw(h2.port, { path: PROCESS_PATH, chunks, gapMs: 20 }));
      noThrow(uncaught);
      assert.equal(ours.grpcStatus, 0, `ours: ${ours.grpcStatus} ${ours.grpcMessage} timedOut=${ours.timedOut}`);
      assert.equal(messagesOf(ours.data).length, 2);
    });

    it('a 5-byte header split 1+1+1+1+1 across DATA frames, body in a sixth: answered OK', async () => {
      const bytes = frame(encodeCheck(buildCheckRequest({ path: '/split-head' })));
      const chunks = [0, 1, 2, 3, 4].map((i) => bytes.subarray(i, i + 1)).concat([bytes.subarray(5)]);
      const ours = await raw(h2.port, { chunks, gapMs: 10 });
      assert.equal(ours.grpcStatus, 0);
      assert.equal(decodeResponse(messagesOf(ours.data)[0]!).ok_response?.headers?.[0]?.header?.value, '/split-head');
    });

    it('compressed flag with grpc-encoding gzip but a garbage body: INTERNAL, as grpc-js', async () => {
      const opts = { headers: { 'grpc-encoding': 'gzip' }, chunks: [compressed(Buffer.from('definitely not gzip'))] };
      const [ours, theirs] = [await raw(h2.port, opts), await raw(js.port, opts)];
      assert.equal(theirs.grpcStatus, grpc.status.INTERNAL);
      assert.equal(ours.grpcStatus, grpc.status.INTERNAL);
      assert.equal(h2.seen.checks, 0);
    });

    it('a deflate-compressed request is answered; a deflate bomb is RESOURCE_EXHAUSTED, as grpc-js', async () => {
      const good = { headers: { 'grpc-encoding': 'deflate' }, chunks: [compressed(deflateSync(encodeCheck(buildCheckRequest({ path: '/deflate' }))))] };
      const ours = await raw(h2.port, good);
      assert.equal(ours.grpcStatus, 0);
      assert.equal(decodeResponse(messagesOf(ours.data)[0]!).ok_response?.headers?.[0]?.header?.value, '/deflate');
      const bomb = { headers: { 'grpc-encoding': 'deflate' }, chunks: [compressed(deflateSync(encodeCheck(buildCheckRequest({ path: '/b', headers: { 'x-pad': 'a'.repeat(8 * MAX) } }))))] };
      const [o, t] = [await raw(h2.port, bomb), await raw(js.port, bomb)];
      assert.equal(t.grpcStatus, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(o.grpcStatus, grpc.status.RESOURCE_EXHAUSTED);
    });

    it('bidi, client still sending: gzip garbage after a good message ends the stream with INTERNAL in the trailers', async () => {
      const chunks = [headersMsg('x-a'), compressed(gzipSync(Buffer.from('x')).subarray(0, 8))];
      const ours = await raw(h2.port, { path: PROCESS_PATH, headers: { 'grpc-encoding': 'gzip' }, chunks, end: false });
      assert.equal(ours.timedOut, false, 'the server ends the stream itself');
      assert.equal(messagesOf(ours.data).length, 1);
      assert.equal(ours.grpcStatus, grpc.status.INTERNAL, `trailers: ${JSON.stringify(ours.trailers)}, rstCode ${ours.rstCode}`);
    });
  });

  describe('resets, trailers, headers', () => {
    it('RST_STREAM in the middle of a unary body: no handler runs, the server keeps serving', async () => {
      const session = http2.connect(`http://127.0.0.1:${h2.port}`);
      session.on('error', () => undefined);
      const req = session.request({ ':method': 'POST', ':path': CHECK_METHOD_PATH, 'content-type': 'application/grpc', te: 'trailers' });
      req.on('error', () => undefined);
      const bytes = frame(encodeCheck(buildCheckRequest({ path: '/rst' })));
      req.write(bytes.subarray(0, 9));
      await sleep(30);
      req.close(http2.constants.NGHTTP2_CANCEL);
      await sleep(50);
      session.close();
      assert.equal(h2.seen.checks, 0);
      assert.equal((await okCheck(h2.port)).grpcStatus, 0);
    });

    it('trailers sent by the client after the message: the call is answered OK, as grpc-js', async () => {
      const opts = { trailers: { 'x-client-trailer': '1' } };
      const [ours, theirs] = [await raw(h2.port, opts), await raw(js.port, opts)];
      assert.equal(theirs.grpcStatus, 0);
      assert.equal(ours.grpcStatus, 0);
    });

    it('a huge header block (60 KB of metadata): the stream is answered or refused, the server keeps serving', async () => {
      const headers: Record<string, string> = {};
      for (let i = 0; i < 60; i++) headers[`x-big-${i}`] = 'v'.repeat(1000);
      const ours = await raw(h2.port, { headers });
      assert.ok(ours.grpcStatus === 0 || ours.rstCode !== undefined || ours.httpStatus === 0, JSON.stringify(ours));
      assert.equal(ours.timedOut, false);
      assert.equal((await okCheck(h2.port)).grpcStatus, 0);
    });

    it('200 concurrent unary streams on one session, half of them reset mid-body: the others are all answered', async () => {
      const session = http2.connect(`http://127.0.0.1:${h2.port}`);
      session.on('error', () => undefined);
      const bytes = frame(encodeCheck(buildCheckRequest({ path: '/many' })));
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          new Promise<string | undefined>((resolve) => {
            const req = session.request({ ':method': 'POST', ':path': CHECK_METHOD_PATH, 'content-type': 'application/grpc', te: 'trailers' });
            let status: string | undefined;
            req.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
            req.on('trailers', (h) => (status = h['grpc-status'] as string));
            req.on('data', () => undefined);
            req.on('error', () => undefined);
            req.on('close', () => resolve(status));
            if (i % 2 === 0) req.end(bytes);
            else {
              req.write(bytes.subarray(0, 7));
              setImmediate(() => req.close(http2.constants.NGHTTP2_CANCEL));
            }
          }),
        ),
      );
      session.close();
      assert.deepEqual(results.filter((_, i) => i % 2 === 0), Array(100).fill('0'));
      assert.equal(h2.seen.checks, 100);
    });
  });

  describe('cancellation as the handler sees it', () => {
    it('forceShutdown during a unary call: the handler sees cancelled, as on grpc-js', async () => {
      for (const [name, srv] of [['grpc-js', js], ['h2', h2]] as const) {
        const pending = raw(srv.port, { chunks: [frame(encodeCheck(buildCheckRequest({ path: '/hang' })))] });
        for (let i = 0; i < 50 && srv.seen.checks === 0; i++) await sleep(10);
        assert.equal(srv.seen.checks, 1, `${name}: handler ran`);
        srv.stop();
        await pending;
        for (let i = 0; i < 20 && srv.seen.cancelled === 0; i++) await sleep(10);
        assert.equal(srv.seen.cancelled, 1, `${name}: the unary handler's 'cancelled' listener ran`);
      }
    });

    it('a client RST_STREAM(NO_ERROR) before the answer: the unary handler sees cancelled, as on grpc-js', async () => {
      for (const [name, srv] of [['grpc-js', js], ['h2', h2]] as const) {
        const session = http2.connect(`http://127.0.0.1:${srv.port}`);
        session.on('error', () => undefined);
        const req = session.request({ ':method': 'POST', ':path': CHECK_METHOD_PATH, 'content-type': 'application/grpc', te: 'trailers' });
        req.on('error', () => undefined);
        req.end(frame(encodeCheck(buildCheckRequest({ path: '/hang' }))));
        for (let i = 0; i < 50 && srv.seen.checks === 0; i++) await sleep(10);
        req.close(http2.constants.NGHTTP2_NO_ERROR);
        for (let i = 0; i < 30 && srv.seen.cancelled === 0; i++) await sleep(10);
        session.destroy();
        assert.equal(srv.seen.cancelled, 1, `${name}: the unary handler's 'cancelled' listener ran`);
      }
    });

    it('a unary request still arriving at its grpc-timeout is ended DEADLINE_EXCEEDED by the server, as grpc-js does', async () => {
      const bytes = frame(encodeCheck(buildCheckRequest({ path: '/slow' })));
      const opts = { headers: { 'grpc-timeout': '100m' }, chunks: [bytes.subarray(0, 10)], end: false, waitMs: 1_000 };
      const [ours, theirs] = await Promise.all([raw(h2.port, opts), raw(js.port, opts)]);
      assert.equal(theirs.grpcStatus, grpc.status.DEADLINE_EXCEEDED, `grpc-js: ${JSON.stringify(theirs)}`);
      assert.equal(ours.timedOut, false, 'ours: the stream (and its buffered partial message) is still open 1 s after a 100 ms deadline');
      assert.equal(ours.grpcStatus, grpc.status.DEADLINE_EXCEEDED);
    });

    it('health Watch past its grpc-timeout ends DEADLINE_EXCEEDED and the watcher is dropped', async () => {
      const ours = await raw(h2.port, { path: WATCH_PATH, headers: { 'grpc-timeout': '150m' }, chunks: [frame(Buffer.alloc(0))], waitMs: 2_000 });
      assert.equal(ours.timedOut, false);
      assert.equal(ours.grpcStatus, grpc.status.DEADLINE_EXCEEDED);
      assert.equal(messagesOf(ours.data).length, 1, 'the current status first');
      const watchers = (h2.health as unknown as { watchers: Map<string, Set<unknown>> }).watchers;
      assert.equal(watchers.get('')?.size ?? 0, 0);
    });

    it('health Watch streams the client resets leave no watcher behind (100 streams)', async () => {
      const session = http2.connect(`http://127.0.0.1:${h2.port}`);
      session.on('error', () => undefined);
      const reqs = Array.from({ length: 100 }, () => {
        const req = session.request({ ':method': 'POST', ':path': WATCH_PATH, 'content-type': 'application/grpc', te: 'trailers' });
        req.on('error', () => undefined);
        req.on('data', () => undefined);
        req.end(frame(Buffer.alloc(0)));
        return req;
      });
      await sleep(100);
      const watchers = (h2.health as unknown as { watchers: Map<string, Set<unknown>> }).watchers;
      assert.equal(watchers.get('')?.size, 100);
      for (const r of reqs) r.close(http2.constants.NGHTTP2_CANCEL);
      await sleep(100);
      session.close();
      assert.equal(watchers.get('')?.size ?? 0, 0);
    });
  });

  describe('streaming handlers as grpc-js runs them', () => {
    it('bidi: a response larger than maxMessageBytes (a receive limit) is sent, as grpc-js does', async () => {
      const opts = { path: PROCESS_PATH, headers: { 'x-mode': 'big' }, chunks: [headersMsg('x-a')] };
      const [ours, theirs] = [await raw(h2.port, opts), await raw(js.port, opts)];
      assert.equal(theirs.grpcStatus, 0, `grpc-js: ${theirs.grpcStatus} ${theirs.grpcMessage}`);
      assert.equal(messagesOf(theirs.data).length, 1);
      assert.equal(ours.grpcStatus, 0, `ours: ${ours.grpcStatus} ${ours.grpcMessage}`);
      assert.equal(messagesOf(ours.data).length, 1);
    });

    it('bidi: call.end(metadata) sends trailing metadata, not an extra response message, as grpc-js', async () => {
      const opts = { path: PROCESS_PATH, headers: { 'x-mode': 'end-metadata' }, chunks: [headersMsg('x-a')] };
      const [ours, theirs] = [await raw(h2.port, opts), await raw(js.port, opts)];
      assert.equal(theirs.grpcStatus, 0);
      assert.equal(messagesOf(theirs.data).length, 0, 'grpc-js sends no message');
      assert.equal(ours.grpcStatus, 0, `ours: ${ours.grpcStatus} ${ours.grpcMessage}`);
      assert.equal(messagesOf(ours.data).length, 0, `ours sent ${messagesOf(ours.data).length} message(s)`);
    });
  });

  describe('streaming call objects', () => {
    /** A server with one bidi method whose handler is given. */
    async function withBidi(handler: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => void): Promise<number> {
      const s = new H2GrpcServer({ maxMessageBytes: MAX, onHandlerError: () => undefined });
      s.addService(processService, { Process: handler });
      const port = await s.listen('127.0.0.1', 0);
      extra.push(() => s.forceShutdown());
      return port;
    }
    const response = { request_headers: { response: { status: 0 } } } as ProcessingResponse;

    it('a handler that writes after end: nothing thrown, the stream ends with a status after the one message', async () => {
      const port = await withBidi((call) => {
        call.on('data', () => {
          call.write(response);
          call.end();
          call.write(response);
        });
      });
      const { value: ours, uncaught } = await capturingUncaught(() => raw(port, { path: PROCESS_PATH, chunks: [headersMsg('x-a')] }));
      noThrow(uncaught);
      assert.equal(ours.timedOut, false);
      assert.notEqual(ours.grpcStatus, undefined, '(grpc-js leaves this stream open; we end it: INTERNAL "write after end")');
      assert.equal(messagesOf(ours.data).length, 1);
    });

    it('a handler that calls callback twice (unary) or end() twice (bidi): one answer, nothing thrown', async () => {
      const s = new H2GrpcServer({ maxMessageBytes: MAX, onHandlerError: () => undefined });
      s.addService(authService, {
        Check: (_call: unknown, cb: grpc.sendUnaryData<CheckResponse>) => {
          cb(null, { status: { code: 0 } });
          cb({ code: grpc.status.INTERNAL, details: 'second' } as grpc.ServiceError, null);
          cb(null, { status: { code: 7 } });
        },
      });
      s.addService(processService, {
        Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
          call.on('data', () => {
            call.end();
            call.end();
          });
        },
      });
      const port = await s.listen('127.0.0.1', 0);
      extra.push(() => s.forceShutdown());
      const { value, uncaught } = await capturingUncaught(async () => [await raw(port), await raw(port, { path: PROCESS_PATH, chunks: [headersMsg('x-a')] })]);
      noThrow(uncaught);
      assert.deepEqual(value.map((v) => v.grpcStatus), [0, 0]);
      assert.equal(messagesOf(value[0]!.data).length, 1);
    });

    it('a handler that calls destroy() without an error: the stream is ended, not left open (grpc-js leaves it open too)', async () => {
      const port = await withBidi((call) => {
        call.on('data', () => call.destroy());
      });
      const ours = await raw(port, { path: PROCESS_PATH, chunks: [headersMsg('x-a')], end: false, waitMs: 1_000 });
      assert.equal(ours.timedOut, false, 'the server left the HTTP/2 stream open after the handler destroyed its call');
    });

    it('a bidi handler that throws a status error: UNKNOWN, as grpc-js', async () => {
      const port = await withBidi(() => {
        throw Object.assign(new Error('no'), { code: grpc.status.PERMISSION_DENIED, details: 'no' });
      });
      const ours = await raw(port, { path: PROCESS_PATH, chunks: [headersMsg('x-a')] });
      assert.equal(ours.grpcStatus, grpc.status.UNKNOWN);
    });

    it('a bidi handler that answers and ends before the client half-closes: the client gets grpc-status 0, as on grpc-js', async () => {
      const handler = (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
        call.on('error', () => undefined);
        call.on('data', () => {
          call.write(response);
          call.end();
        });
      };
      const port = await withBidi(handler);
      const g = new grpc.Server();
      g.addService(processService, { Process: handler });
      const gport = await new Promise<number>((res, rej) => g.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
      extra.push(() => g.forceShutdown());
      const opts = { path: PROCESS_PATH, chunks: [headersMsg('x-a')], end: false, waitMs: 1_000 };
      const [ours, theirs] = [await raw(port, opts), await raw(gport, opts)];
      assert.equal(theirs.grpcStatus, 0);
      assert.equal(messagesOf(ours.data).length, 1);
      assert.equal(ours.grpcStatus, 0, `ours: trailers ${JSON.stringify(ours.trailers)}, rstCode ${ours.rstCode}, timedOut ${ours.timedOut}`);
    });

    it('bidi past its deadline while the client keeps sending: DEADLINE_EXCEEDED and no error escapes', async () => {
      let errors = 0;
      const port = await withBidi((call) => {
        call.on('data', () => call.write(response));
        call.on('error', () => errors++);
      });
      const chunks = Array.from({ length: 200 }, () => headersMsg('x-a'));
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on('error', () => undefined);
      const req = session.request({ ':method': 'POST', ':path': PROCESS_PATH, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '100m' });
      req.on('error', () => undefined);
      req.on('data', () => undefined);
      let status: string | undefined;
      req.on('trailers', (h) => (status = h['grpc-status'] as string));
      req.on('response', (h) => (status ??= h['grpc-status'] as string | undefined));
      const closed = new Promise<void>((r) => req.on('close', () => r()));
      const t0 = Date.now();
      while (!req.closed && Date.now() - t0 < 1_500) {
        for (const c of chunks.slice(0, 5)) req.write(c);
        await sleep(5);
      }
      await Promise.race([closed, sleep(1_000)]);
      session.destroy();
      assert.equal(errors, 0);
      assert.equal(status, String(grpc.status.DEADLINE_EXCEEDED), `the stream closed (rstCode ${req.rstCode}) without a grpc-status`);
    });
  });
});
