/**
 * Independent review of the h2 gRPC transport (ext-authz/src/transport) against hostile or broken
 * HTTP/2 clients: the real PassgateService over loopback, driven by node:http2 (test/support/h2-raw.ts)
 * and by a hand-written HTTP/2 peer (below) for what node:http2 will not send (one-byte DATA frames,
 * unknown frame types, a zero receive window, streams past SETTINGS_MAX_CONCURRENT_STREAMS).
 * Where it helps decide what is right, the same input goes to the grpc-js fallback. A failing test
 * here is a finding: the source is not changed by this review.
 */
import { strict as assert } from 'node:assert';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { deflateSync, gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { startService, httpCheck, type Running } from '../support/service.js';
import { compressedFrame, messagesOf, raw, type RawOptions } from '../support/h2-raw.js';
import { CHECK_METHOD_PATH, loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { frame } from '../../ext-authz/src/transport/framing.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;
const REFLECTION_PATH = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo';
const checkDef = loadAuthorizationService().service['Check'] as grpc.MethodDefinition<CheckRequest, CheckResponse>;
const checkBytes = (path: string, headers: Record<string, string> = {}) => checkDef.requestSerialize(buildCheckRequest({ path, headers }));
const decode = (data: Buffer): CheckResponse => checkDef.responseDeserialize(messagesOf(data)[0]!);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isOk = (r: CheckResponse) => (r.status?.code ?? 0) === 0 && r.ok_response !== undefined;

const config = (server = '') => `
logging: { level: warn, audit: false }
server: { transport: h2${server} }
gateways:
  public:
    kind: public
    select: { hosts: [www.example.com] }
    routes:
      - { name: slow, match: { path: { prefix: /slow } }, stages: [{ type: test-sleep, ms: 100 }, allow] }
    defaultRoute: { stages: [allow] }
`;

/** Heap and native buffers after a full GC, in bytes. */
function memory(): { heap: number; buffers: number; rss: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers, rss: m.rss };
}

// ---- a hand-written HTTP/2 client: frames exactly as given, the server's frames counted by type ----
const DATA = 0, HEADERS = 1, RST_STREAM = 3, SETTINGS = 4, PING = 6;
const END_STREAM = 1, END_HEADERS = 4, ACK = 1;
function fr(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}
/** HPACK without Huffman or indexing: :method POST, :scheme http (static table), the rest as literals. */
function hpack(path: string, extra: Record<string, string> = {}): Buffer {
  const int7 = (n: number): number[] => (n < 127 ? [n] : [127, ...(n - 127 < 128 ? [n - 127] : [((n - 127) & 127) | 128, (n - 127) >> 7])]);
  const lit = (s: string) => Buffer.concat([Buffer.from(int7(Buffer.byteLength(s))), Buffer.from(s)]);
  const parts = [Buffer.from([0x83, 0x86, 0x04]), lit(path), Buffer.from([0x01]), lit('localhost')];
  for (const [k, v] of Object.entries({ 'content-type': 'application/grpc', te: 'trailers', ...extra })) parts.push(Buffer.from([0]), lit(k), lit(v));
  return Buffer.concat(parts);
}
interface Peer {
  frames: Array<{ type: number; flags: number; stream: number; code?: number }>;
  write(b: Buffer): Promise<void>;
  /** Sends a PING and waits for its ACK: every frame sent before it has been processed by the server. */
  sync(): Promise<void>;
  destroy(): void;
}
async function peer(port: number, settings: Buffer = Buffer.alloc(0)): Promise<Peer> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  const frames: Peer['frames'] = [];
  let buf = Buffer.alloc(0);
  let acked: (() => void) | undefined;
  const ready = new Promise<void>((resolve) =>
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const f = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, ...(buf[3] === RST_STREAM ? { code: buf.readUInt32BE(9) } : {}) };
        frames.push(f);
        if (f.type === SETTINGS && !(f.flags & ACK)) (sock.write(fr(SETTINGS, ACK, 0)), resolve());
        if (f.type === PING && f.flags & ACK) acked?.();
        buf = buf.subarray(9 + buf.readUIntBE(0, 3));
      }
    }),
  );
  sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), fr(SETTINGS, 0, 0, settings)]));
  await ready;
  const write = (b: Buffer) => new Promise<void>((r) => sock.write(b, () => r()));
  return {
    frames,
    write,
    sync: () => new Promise<void>((r) => ((acked = r), void write(fr(PING, 0, 0, Buffer.alloc(8))))),
    destroy: () => sock.destroy(),
  };
}

async function capturing<T>(run: () => Promise<T>): Promise<{ value: T; uncaught: unknown[] }> {
  const saved = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const uncaught: unknown[] = [];
  const catcher = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', catcher);
  process.on('unhandledRejection', catcher);
  try {
    return { value: await run(), uncaught };
  } finally {
    process.off('uncaughtException', catcher);
    process.off('unhandledRejection', catcher);
    for (const l of saved) process.on('uncaughtException', l);
  }
}

describe('h2 transport review: hostile HTTP/2 clients against the real service', function () {
  this.timeout(30_000);
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  async function start(server = ''): Promise<Running> {
    const run = await startService(config(server));
    cleanups.push(() => run.stop());
    return run;
  }
  const okAfter = async (run: Running) => assert.ok(isOk(await run.check(httpCheck({ path: '/after' }))), 'the service still answers');

  describe('findings: one client can take the event loop or memory', () => {
    it('a 100 KB Check sent as one-byte DATA frames (1 MB on the wire) does not stall the event loop: other Checks (2 s deadline) are all answered', async function () {
      this.timeout(120_000);
      const run = await start();
      const bytes = frame(checkBytes('/trickle', { 'x-pad': 'a'.repeat(100_000) }));
      const p = await peer(run.svc.grpcPort);
      cleanups.push(() => p.destroy());
      const parts = [fr(HEADERS, END_HEADERS, 1, hpack(CHECK_METHOD_PATH))];
      for (let i = 0; i < bytes.length; i++) parts.push(fr(DATA, i === bytes.length - 1 ? END_STREAM : 0, 1, bytes.subarray(i, i + 1)));
      await p.write(Buffer.concat(parts));
      const answered = () => p.frames.some((f) => f.stream === 1 && f.type === HEADERS);
      const others: string[] = [];
      const t0 = Date.now();
      while (!answered() && Date.now() - t0 < 90_000) {
        others.push(await run.check(httpCheck({ path: '/other' }), 2_000).then((r) => (isOk(r) ? 'ok' : 'denied'), (e: grpc.ServiceError) => `${grpc.status[e.code]}: ${e.details.slice(0, 60)}`));
      }
      assert.ok(answered(), 'the trickled Check was answered');
      // grpc-js (server.transport: grpc-js) reassembles the same request with every other Check answered.
      // MessageReader keeps each 1-byte chunk in `pending` and take() shift()s them off one by one.
      assert.deepEqual(others.filter((o) => o !== 'ok'), [], `of ${others.length} Checks sent by another client while one request was reassembled, these failed`);
    });

    it('a message trickled one byte per socket read holds only its own bytes, not every read buffer (500 bytes pending: < 4 MiB retained)', async () => {
      const run = await start(', maxMessageBytes: 65536');
      await okAfter(run);
      const before = memory();
      const p = await peer(run.svc.grpcPort);
      cleanups.push(() => p.destroy());
      const head = Buffer.alloc(5);
      head.writeUInt32BE(60_000, 1); // within maxMessageBytes: the server waits for the rest
      await p.write(Buffer.concat([fr(HEADERS, END_HEADERS, 1, hpack(CHECK_METHOD_PATH)), fr(DATA, 0, 1, head)]));
      // One byte of the message, then 64 KB of frames of an unknown type (RFC 9113 §4.1: ignored), so each
      // socket read the server makes carries about one byte of the message.
      const unit = Buffer.concat([fr(DATA, 0, 1, Buffer.from('a')), ...Array.from({ length: 4 }, () => fr(0xfa, 0, 0, Buffer.alloc(16_000)))]);
      for (let i = 0; i < 500; i++) await p.write(unit);
      await p.sync();
      const grown = memory().buffers - before.buffers;
      assert.equal(p.frames.filter((f) => f.stream === 1).length, 0, 'the message is still arriving');
      assert.ok(grown < 4 * MiB, `500 pending bytes of one stream (maxMessageBytes 64 KiB) keep ${(grown / MiB).toFixed(1)} MiB of ArrayBuffers alive`);
      p.destroy();
      await okAfter(run);
    });

    it('reflection: a client that never reads its answers (receive window 0) cannot make the server buffer without bound (8 MB sent: < 16 MiB held)', async () => {
      const run = await start();
      await okAfter(run);
      const before = memory();
      const p = await peer(run.svc.grpcPort, Buffer.from([0, 4, 0, 0, 0, 0])); // SETTINGS_INITIAL_WINDOW_SIZE = 0
      cleanups.push(() => p.destroy());
      const symbol = Buffer.from('envoy.service.auth.v3.Authorization');
      const one = frame(Buffer.concat([Buffer.from([0x22, symbol.length]), symbol])); // file_containing_symbol
      const data = fr(DATA, 0, 1, Buffer.concat(Array.from({ length: 390 }, () => one))); // 390 whole requests
      await p.write(fr(HEADERS, END_HEADERS, 1, hpack(REFLECTION_PATH)));
      for (let i = 0; i < 513; i++) await p.write(data);
      await p.sync();
      await sleep(200);
      const after = memory();
      const grown = after.heap + after.buffers - before.heap - before.buffers;
      // StreamCall reads on while its writes cannot go out; reflection ignores write()'s false (grpc-js: the same).
      assert.ok(grown < 16 * MiB, `${((513 * 390 * one.length) / MiB).toFixed(1)} MiB of requests whose answers cannot be sent: ${(grown / MiB).toFixed(0)} MiB held by the server`);
    });
  });

  describe('what held', () => {
    it('decompression bombs (gzip, deflate, unary and bidi) and an over-limit compressed size are RESOURCE_EXHAUSTED; memory stays bounded', async () => {
      const run = await start();
      const port = run.svc.grpcPort;
      const padded = checkBytes('/bomb', { 'x-pad': 'a'.repeat(16 * MiB) }); // 16 MiB of CheckRequest
      const member = gzipSync(padded);
      const gzBomb = Buffer.concat(Array.from({ length: 64 }, () => member)); // 64 gzip members: 1 GiB from ~1 MiB
      const cases: Array<[string, RawOptions]> = [
        ['unary gzip 1 GiB', { headers: { 'grpc-encoding': 'gzip' }, chunks: [compressedFrame(gzBomb)] }],
        ['unary deflate 16 MiB', { headers: { 'grpc-encoding': 'deflate' }, chunks: [compressedFrame(deflateSync(padded))] }],
        ['reflection gzip 1 GiB', { path: REFLECTION_PATH, headers: { 'grpc-encoding': 'gzip' }, chunks: [compressedFrame(gzBomb)] }],
        ['compressed 4 MiB + 1', { headers: { 'grpc-encoding': 'gzip' }, chunks: [compressedFrame(gzipSync(randomBytes(4 * MiB + 64)))] }],
      ];
      const before = memory();
      for (const [name, opts] of cases) {
        const res = await raw(port, { waitMs: 10_000, ...opts });
        assert.equal(res.grpcStatus, grpc.status.RESOURCE_EXHAUSTED, `${name}: ${res.grpcStatus} ${res.grpcMessage}`);
      }
      assert.ok(memory().rss - before.rss < 256 * MiB, 'no bomb was expanded past the limit');
      const small = await raw(port, { headers: { 'grpc-encoding': 'gzip' }, chunks: [compressedFrame(gzipSync(checkBytes('/gz')))] });
      assert.ok(isOk(decode(small.data)), 'a small gzip Check is answered');
    });

    it('grpc-timeout: 0n, 1n, 0S get a fail-closed CheckResponse (or DEADLINE_EXCEEDED), 99999999H an answer, malformed values INTERNAL (as grpc-js for 1s and "")', async () => {
      const run = await start();
      const js = await startService(config().replace('transport: h2', 'transport: grpc-js'));
      cleanups.push(() => js.stop());
      for (const t of ['0n', '1n', '0S']) {
        const res = await raw(run.svc.grpcPort, { headers: { 'grpc-timeout': t }, chunks: [frame(checkBytes('/slow'))] });
        // Already past its deadline: DEADLINE_EXCEEDED if the timer wins, else a fail-closed CheckResponse.
        if (res.grpcStatus === grpc.status.DEADLINE_EXCEEDED) continue;
        assert.equal(res.grpcStatus, 0, `${t}: ${res.grpcStatus} ${res.grpcMessage}`);
        assert.equal(decode(res.data).denied_response?.status?.code, 503, `${t}: a decision by the (past) deadline`);
      }
      const long = await raw(run.svc.grpcPort, { headers: { 'grpc-timeout': '99999999H' } });
      assert.ok(isOk(decode(long.data)), '99999999H: a 11,000-year deadline is no deadline trouble');
      for (const t of ['1s', '', '1x', '-1S', '+1S', '1.0S', '1S1', '123456789S']) {
        const ours = await raw(run.svc.grpcPort, { headers: { 'grpc-timeout': t } });
        assert.equal(ours.grpcStatus, grpc.status.INTERNAL, `ours, grpc-timeout ${JSON.stringify(t)}: ${ours.grpcStatus}`);
      }
      for (const t of ['1s', '']) assert.equal((await raw(js.svc.grpcPort, { headers: { 'grpc-timeout': t } })).grpcStatus, grpc.status.INTERNAL, `grpc-js ${t}`);
    });

    it('malformed headers and framing: each refused with the documented status, never a crash; the same as grpc-js where documented', async () => {
      const run = await start();
      const js = await startService(config().replace('transport: h2', 'transport: grpc-js'));
      cleanups.push(() => js.stop());
      const body = frame(checkBytes('/m'));
      const flagged = (flag: number) => Buffer.concat([Buffer.from([flag]), body.subarray(1)]);
      const U = grpc.status.UNIMPLEMENTED, I = grpc.status.INTERNAL, R = grpc.status.RESOURCE_EXHAUSTED;
      // [name, request, ours (http status or grpc status), grpc-js the same?]
      const cases: Array<[string, RawOptions, { http?: number; grpc?: number }, boolean]> = [
        ['content-type application/json', { headers: { 'content-type': 'application/json' } }, { http: 415 }, true],
        ['content-type Application/GRPC', { headers: { 'content-type': 'Application/GRPC' } }, { http: 415 }, true],
        ['content-type application/grpc+proto', { headers: { 'content-type': 'application/grpc+proto' } }, { grpc: 0 }, true],
        ['content-type application/grpcfoo (prefix match, as grpc-js)', { headers: { 'content-type': 'application/grpcfoo' } }, { grpc: 0 }, true],
        ['method PUT (grpc-js: no check)', { method: 'PUT' }, { http: 405 }, false],
        ['path with a query string', { path: `${CHECK_METHOD_PATH}?x=1` }, { grpc: U }, true],
        ['path percent-encoded', { path: CHECK_METHOD_PATH.replace('Check', '%43heck') }, { grpc: U }, true],
        ['message flag 2 (grpc-js: read as uncompressed)', { chunks: [flagged(2)] }, { grpc: I }, false],
        ['message flag 0x81', { chunks: [flagged(0x81)] }, { grpc: I }, false],
        ['compressed flag with grpc-encoding identity', { headers: { 'grpc-encoding': 'identity' }, chunks: [flagged(1)] }, { grpc: I }, false],
        ['compressed flag with grpc-encoding GZIP', { headers: { 'grpc-encoding': 'GZIP' }, chunks: [compressedFrame(gzipSync(checkBytes('/g')))] }, { grpc: U }, true],
        ['4 GiB length prefix, then a trickle, never ended', { chunks: [Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 1, 2])], end: false }, { grpc: R }, true],
        ['two messages on unary Check', { chunks: [Buffer.concat([body, body])] }, { grpc: U }, true],
        ['ends mid-message', { chunks: [body.subarray(0, body.length - 3)] }, { grpc: U }, true],
        ['-bin metadata that is not base64', { headers: { 'x-a-bin': '!!!*@@==,,%%' } }, { grpc: 0 }, true],
        ['grpc-accept-encoding odd values', { headers: { 'grpc-accept-encoding': ', ,;q=0, br, \t' } }, { grpc: 0 }, true],
      ];
      const { uncaught } = await capturing(async () => {
        for (const [name, opts, want, sameAsJs] of cases) {
          const ours = await raw(run.svc.grpcPort, opts);
          assert.equal(ours.timedOut, false, `${name}: no answer`);
          if (want.http) assert.equal(ours.httpStatus, want.http, `${name}: HTTP ${ours.httpStatus}`);
          else assert.deepEqual([ours.httpStatus, ours.grpcStatus], [200, want.grpc], `${name}: ${ours.grpcStatus} ${ours.grpcMessage}`);
          if (!sameAsJs) continue;
          const theirs = await raw(js.svc.grpcPort, opts);
          if (want.http) assert.equal(theirs.httpStatus, want.http, `grpc-js, ${name}`);
          else assert.equal(theirs.grpcStatus, want.grpc, `grpc-js, ${name}: ${theirs.grpcStatus} ${theirs.grpcMessage}`);
        }
      });
      assert.deepEqual(uncaught, []);
      await okAfter(run);
    });

    it('resets at every point of a Check (after HEADERS, mid-body, after the whole message, after END_STREAM, while a stage runs): nothing thrown, no Check left in flight', async () => {
      const run = await start();
      const bytes = frame(checkBytes('/slow'));
      const { uncaught } = await capturing(async () => {
        const session = http2.connect(`http://127.0.0.1:${run.svc.grpcPort}`);
        session.on('error', () => undefined);
        await Promise.all(
          Array.from({ length: 250 }, (_, i) =>
            new Promise<void>((resolve) => {
              const req = session.request({ ':method': 'POST', ':path': CHECK_METHOD_PATH, 'content-type': 'application/grpc', te: 'trailers' });
              req.on('error', () => undefined);
              req.on('data', () => undefined);
              req.on('close', () => resolve());
              const reset = () => req.close(i % 2 ? http2.constants.NGHTTP2_CANCEL : http2.constants.NGHTTP2_NO_ERROR);
              const mode = i % 5;
              if (mode === 0) setImmediate(reset);
              else if (mode === 1) req.write(bytes.subarray(0, 9), () => setImmediate(reset));
              else if (mode === 2) req.write(bytes, () => setImmediate(reset));
              else if (mode === 3) req.end(bytes, () => setImmediate(reset));
              else (req.end(bytes), setTimeout(reset, 30));
            }),
          ),
        );
        await sleep(300); // every /slow stage has finished
        session.close();
      });
      assert.deepEqual(uncaught, []);
      assert.equal(run.svc.grpc.checksInFlight, 0);
      await okAfter(run);
    });

    it('a client past SETTINGS_MAX_CONCURRENT_STREAMS (1,100 open streams) and with te: gzip: never more than 1,000 streams held; another client is served', async () => {
      const run = await start();
      let received = 0;
      (run.svc.grpc as unknown as { server: { server: http2.Http2Server } }).server.server.on('stream', () => received++);
      const p = await peer(run.svc.grpcPort);
      cleanups.push(() => p.destroy());
      await p.write(fr(HEADERS, END_HEADERS | END_STREAM, 1, hpack(CHECK_METHOD_PATH, { te: 'gzip' })));
      await p.write(Buffer.concat(Array.from({ length: 1_100 }, (_, i) => fr(HEADERS, END_HEADERS, 3 + 2 * i, hpack(CHECK_METHOD_PATH)))));
      await sleep(300);
      assert.deepEqual(p.frames.filter((f) => f.stream === 1).map((f) => [f.type, f.code]), [[RST_STREAM, http2.constants.NGHTTP2_PROTOCOL_ERROR]], 'te: gzip is a malformed request');
      assert.ok(received <= 1_000, `${received} streams reached the server`);
      await okAfter(run);
    });
  });
});
