/**
 * Review of the hot-path CheckRequest decoder (proto/check-decoder.ts) and its string tables
 * (proto/string-table.ts) over hand-built wire bytes. The reference is what the service ran before:
 * proto-loader's deserializer over the project's protos (a refusal there is a refusal here). Each case
 * must give the same request view as the reference, or both must refuse the bytes.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { createCheckRequestDecoder } from '../../ext-authz/src/proto/check-decoder.js';
import { loadAuthorizationService } from '../../ext-authz/src/proto/load.js';
import { StringTable } from '../../ext-authz/src/proto/string-table.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';
import { toRequestView, type RequestView } from '../../ext-authz/src/pipeline/request-view.js';
import { plainView } from '../support/plain-view.js';

const method = loadAuthorizationService().service['Check'] as grpc.MethodDefinition<CheckRequest, unknown>;
const reference = (b: Buffer) => method.requestDeserialize(b);
const fast = createCheckRequestDecoder();

// ---- a tiny wire encoder ----------------------------------------------------------------------------
type Bytes = number[];
function varint(v: number | bigint): Bytes {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: Bytes = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) b |= 0x80;
    out.push(b);
  } while (x !== 0n);
  return out;
}
const tag = (field: number, wt: number): Bytes => varint(field * 8 + wt);
const ld = (field: number, body: Bytes): Bytes => [...tag(field, 2), ...varint(body.length), ...body];
const str = (field: number, s: string | Bytes): Bytes => ld(field, typeof s === 'string' ? [...Buffer.from(s)] : s);
const entry = (field: number, k: string, v: string): Bytes => ld(field, [...str(1, k), ...str(2, v)]);
// CheckRequest.attributes 1; AttributeContext: source 1, destination 2, request 4, context_extensions 10,
// metadata_context 11, tls_session 12; Request: time 1, http 2; HttpRequest: id 1 method 2 headers 3 path 4
// host 5 fragment 8 size 9 header_map 13; Peer: address 1 labels 3 principal 4; Address: socket_address 1,
// pipe 2; SocketAddress: protocol 1 address 2 port_value 3 named_port 4 resolver_name 5; HeaderValue 1/2/3.
const ctx = (body: Bytes) => ld(1, body);
const req = (body: Bytes) => ctx(ld(4, body));
const http = (body: Bytes) => req(ld(2, body));
const addr = (body: Bytes) => ctx(ld(1, ld(1, body)));
const sock = (body: Bytes) => addr(ld(1, body));
const hv = (body: Bytes) => http(ld(13, ld(1, body)));

// ---- outcomes -----------------------------------------------------------------------------------------
type Outcome = { view: RequestView } | { refused: string };
function outcome(decode: (b: Buffer) => CheckRequest, bytes: Buffer): Outcome {
  try {
    return { view: plainView(toRequestView(decode(bytes))) };
  } catch (e) {
    return { refused: (e as Error).constructor.name };
  }
}
const kind = (o: Outcome) => ('view' in o ? o : { refused: true });
const brief = (o: Outcome) =>
  'view' in o ? JSON.stringify({ path: o.view.path, isHttp: o.view.isHttp, headers: o.view.headers, ext: o.view.contextExtensions, src: o.view.source.address }) : `refused (${o.refused})`;
/** The cases where the hot-path decoder and proto-loader disagree, with what each gave. */
function diverging(cases: Array<[string, Bytes]>): string[] {
  const bad: string[] = [];
  for (const [name, b] of cases) {
    const bytes = Buffer.from(b);
    const got = outcome(fast, bytes);
    const want = outcome(reference, bytes);
    try {
      assert.deepStrictEqual(kind(got), kind(want));
    } catch {
      bad.push(`${name}: hot path ${brief(got)}; proto-loader ${brief(want)}`);
    }
  }
  return bad;
}
function same(b: Bytes, what: string): Outcome {
  const bytes = Buffer.from(b);
  const want = outcome(reference, bytes);
  assert.deepStrictEqual(kind(outcome(fast, bytes)), kind(want), `${what}: hot path differs from proto-loader`);
  return want;
}
const viewOf = (o: Outcome): RequestView => {
  assert.ok('view' in o, `expected an answer, got a refusal (${'refused' in o ? o.refused : ''})`);
  return o.view;
};

describe('hardening: CheckRequest decoder and string tables (review)', () => {
  describe('fields the view never reads', () => {
    it('an unread known field sent with another wire type is read as its declared type, as protobufjs reads it, so the bytes after it frame the same', () => {
      const gw = entry(10, 'gateway', 'admin');
      const hdr = entry(3, 'x-admin', 'true');
      const sa = ld(1, str(2, '10.9.9.9'));
      const hp = ld(2, str(4, '/admin'));
      const cases: Array<[string, Bytes]> = [
        // metadata_context (message) as a varint: protobufjs takes the varint as its length, the gateway entry is Metadata.
        ['AttributeContext.metadata_context as varint', ctx([...tag(11, 0), ...varint(gw.length), ...gw])],
        // fragment (string) as a varint: protobufjs takes the varint as the string's length.
        ['HttpRequest.fragment as varint', http([...str(4, '/'), ...tag(8, 0), ...varint(hdr.length), ...hdr])],
        // protocol (enum) as a LEN field: protobufjs reads the length as the enum and parses the contents as SocketAddress.
        ['SocketAddress.protocol as LEN', sock(ld(1, str(2, '10.9.9.9')))],
        // pipe (message) as a varint: the socket_address after it is Pipe.path for protobufjs.
        ['Address.pipe as varint', addr([...tag(2, 0), ...varint(sa.length), ...sa])],
        // time (Timestamp) as a varint: the http after it is inside the Timestamp for protobufjs.
        ['Request.time as varint', req([...tag(1, 0), ...varint(hp.length), ...hp])],
        ['AttributeContext.route_metadata_context as varint', ctx([...tag(13, 0), ...varint(gw.length), ...gw])],
        ['SocketAddress.ipv4_compat as LEN', sock(ld(6, str(2, '10.9.9.9')))],
        ['Address.envoy_internal_address as varint', addr([...tag(3, 0), ...varint(sa.length), ...sa])],
      ];
      // Each of these is answered by proto-loader (so it is not a case of "both refuse").
      for (const [, b] of cases) viewOf(outcome(reference, Buffer.from(b)));
      assert.deepEqual(diverging(cases), [], 'the hot path frames these bytes differently from proto-loader');
    });

    it('an unread string whose length runs past its message is cut at the message end (BufferReader#string), not refused', () => {
      const cases: Array<[string, Bytes]> = [
        ['HttpRequest.fragment', http([...str(4, '/ok'), ...tag(8, 2), ...varint(200), 0x61, 0x62])],
        ['SocketAddress.named_port', sock([...str(2, '10.0.0.1'), ...tag(4, 2), ...varint(50), 0x61])],
        ['SocketAddress.resolver_name', sock([...str(2, '10.0.0.1'), ...tag(5, 2), ...varint(0xffffffff), 0x61])],
      ];
      for (const [, b] of cases) viewOf(outcome(reference, Buffer.from(b)));
      assert.deepEqual(diverging(cases), [], 'the hot path refuses what proto-loader answers');
    });
  });

  describe('unknown fields, groups, lengths', () => {
    it('unknown fields of every wire type at every level are skipped as protobufjs skips them; end-group and wire types 6 and 7 are refused', () => {
      const unknown = (f: number): Bytes[] => [
        [...tag(f, 0), ...varint(-1n)],
        [...tag(f, 1), 1, 2, 3, 4, 5, 6, 7, 8],
        ld(f, [0xff, 0xff, 0x00]),
        [...tag(f, 3), ...tag(1, 0), 5, ...tag(2, 3), ...ld(3, [1]), ...tag(2, 4), ...tag(f, 4)],
        [...tag(f, 5), 1, 2, 3, 4],
      ];
      // The unknown field comes last, so a fixed64/fixed32 cut short is cut by its message's end.
      const levels: Array<[string, (u: Bytes) => Bytes]> = [
        ['CheckRequest', (u) => [...http(str(4, '/p')), ...u]],
        ['AttributeContext', (u) => ctx([...ld(12, str(1, 'sni')), ...u])],
        ['Peer', (u) => ctx(ld(1, [...str(4, 'spiffe://a'), ...u]))],
        ['Address', (u) => addr([...ld(1, str(2, '1.2.3.4')), ...u])],
        ['SocketAddress', (u) => sock([...str(2, '1.2.3.4'), ...tag(3, 0), ...varint(443), ...u])],
        ['Request', (u) => req([...ld(2, str(4, '/q')), ...u])],
        ['HttpRequest', (u) => http([...entry(3, 'a', 'b'), ...u])],
        ['headers entry', (u) => http(ld(3, [...str(1, 'k'), ...str(2, 'v'), ...u]))],
        ['labels entry', (u) => ctx(ld(1, ld(3, [...str(1, 'k'), ...str(2, 'v'), ...u])))],
        ['HeaderMap', (u) => http(ld(13, [...ld(1, [...str(1, 'x'), ...str(2, 'y')]), ...u]))],
        ['HeaderValue', (u) => hv([...str(1, 'x'), ...str(2, 'y'), ...u])],
        ['TLSSession', (u) => ctx(ld(12, [...str(1, 'sni'), ...u]))],
      ];
      for (const [level, wrap] of levels) {
        for (const [i, u] of unknown(99).entries()) {
          const v = viewOf(same(wrap(u), `${level}: wire type ${[0, 1, 2, 3, 5][i]}`));
          assert.deepEqual(v, viewOf(outcome(fast, Buffer.from(wrap([])))), `${level}: the unknown field changed the view`);
        }
        for (const wt of [4, 6, 7]) assert.ok('refused' in same(wrap([...tag(99, wt), 0, 0, 0, 0, 0, 0, 0, 0]), `${level}: wt ${wt}`));
        // fixed64 / fixed32 cut by the end of the message
        assert.ok('refused' in same(wrap([...tag(99, 1), 1, 2, 3]), `${level}: cut fixed64`));
      }
    });

    it('groups nested at the recursion limit are skipped, one deeper is refused, at every message depth', () => {
      const groups = (n: number): Bytes => [...Array.from({ length: n }, () => tag(99, 3)).flat(), ...Array.from({ length: n }, () => tag(99, 4)).flat()];
      const levels: Array<[string, (u: Bytes) => Bytes]> = [
        ['CheckRequest', (u) => u],
        ['AttributeContext', (u) => ctx(u)],
        ['context_extensions entry', (u) => ctx(ld(10, u))],
        ['SocketAddress', (u) => sock(u)],
        ['HttpRequest', (u) => http(u)],
        ['headers entry', (u) => http(ld(3, u))],
        ['HeaderValue', (u) => hv(u)],
      ];
      for (const [level, wrap] of levels) {
        let flip = -1;
        for (let n = 90; n <= 103; n++) {
          const o = same(wrap(groups(n)), `${level}: ${n} nested groups`);
          if ('refused' in o && flip < 0) flip = n;
        }
        assert.ok(flip > 90, `${level}: the reference must flip from answer to refusal in range (flip ${flip})`);
      }
    });

    it('lengths: negative, 64-bit and 2^32-1 lengths, nested messages ending past their parent, strings past their message', () => {
      const refused: Array<[string, Bytes]> = [
        ['attributes length -1 (10-byte varint)', [...tag(1, 2), ...varint(-1n), ...ld(12, [])]],
        ['Peer length 2^32-1', ctx([...tag(1, 2), ...varint(0xffffffff), 0])],
        // AttributeContext of 3 bytes whose Peer claims 5: the Peer would end inside the buffer, past its parent.
        ['source Peer ending past AttributeContext', [...tag(1, 2), 3, ...tag(1, 2), 5, ...tag(4, 2), 1, 0x61, ...tag(20, 0), 0]],
        ['header entry ending past HttpRequest', http([...tag(3, 2), 9, ...str(1, 'k')])],
        ['HeaderValue ending past HeaderMap', http([...tag(13, 2), 4, ...tag(1, 2), 6, ...str(1, 'k')])],
        ['raw_value past its message', hv([...str(1, 'k'), ...tag(3, 2), 50, 1])],
        ['11-byte size varint', http([...tag(9, 0), ...Array(10).fill(0xff), 1])],
        ['varint tag cut by the message end', http([...str(4, '/'), 0x80])],
      ];
      for (const [name, b] of refused) assert.ok('refused' in same(b, name), `${name}: must be refused`);
      const answered: Array<[string, Bytes, (v: RequestView) => void]> = [
        ['path length -1', http([...tag(4, 2), ...varint(-1n), ...Buffer.from('/neg')]), (v) => assert.equal(v.path, '/neg')],
        ['path length 2^32+4 (low 32 bits read)', http([...tag(4, 2), ...varint(2n ** 32n + 4n), ...Buffer.from('/abc'), ...str(5, 'h')]), (v) => assert.deepEqual([v.path, v.host], ['/abc', 'h'])],
        ['header value past its entry', http([...ld(3, [...str(1, 'k'), ...tag(2, 2), 40, 0x76]), ...entry(3, 'z', '1')]), (v) => assert.equal(v.headers['k'], 'v')],
        ['size -1 as 10 bytes', http([...tag(9, 0), ...varint(-1n)]), (v) => assert.equal(v.size, -1)],
        ['port as a 10-byte varint', sock([...tag(3, 0), ...varint(2n ** 63n + 443n)]), (v) => assert.equal(v.source.port, 443)],
      ];
      for (const [name, b, check] of answered) check(viewOf(same(b, name)));
    });
  });

  describe('repeated singular fields and maps', () => {
    it('a singular message sent twice replaces the first (protobufjs), a repeated scalar keeps the last', () => {
      const cases: Array<[string, Bytes, (v: RequestView) => void]> = [
        ['attributes twice', [...ctx(ld(12, str(1, 'first'))), ...ctx(ld(1, str(4, 'p')))], (v) => assert.equal(v.sni, '')],
        ['request twice', [...http([...str(4, '/a'), ...entry(3, 'x-a', '1')]), ...ctx(ld(4, []))], (v) => assert.equal(v.isHttp, false)],
        ['http twice in one Request', req([...ld(2, [...str(4, '/a'), ...entry(3, 'x-a', '1')]), ...ld(2, entry(3, 'x-b', '2'))]), (v) => assert.deepEqual(Object.keys(v.headers), ['x-b'])],
        ['socket_address twice', addr([...ld(1, [...str(2, '1.1.1.1'), ...tag(3, 0), 80]), ...ld(1, str(2, '2.2.2.2'))]), (v) => assert.deepEqual([v.source.address, v.source.port], ['2.2.2.2', 0])],
        ['header_map twice', http([...ld(13, ld(1, [...str(1, 'a'), ...str(2, '1')])), ...ld(13, ld(1, [...str(1, 'b'), ...str(2, '2')]))]), (v) => assert.deepEqual(Object.keys(v.headers), ['b'])],
        ['path twice', http([...str(4, '/first'), ...str(4, '/second')]), (v) => assert.equal(v.path, '/second')],
        ['source split in two Peer fields', ctx([...ld(1, str(4, 'spiffe://a')), ...ld(1, str(2, 'svc'))]), (v) => assert.deepEqual([v.source.principal, v.source.service], ['', 'svc'])],
      ];
      for (const [name, b, check] of cases) check(viewOf(same(b, name)));
    });

    it('map entries: missing key or value, duplicate keys, a key sent twice, a varint-typed key; prototype names stay own values', () => {
      const before = Object.getOwnPropertyNames(Object.prototype).sort();
      const b = http([
        ...ld(3, str(2, 'no-key')),
        ...ld(3, str(1, 'no-value')),
        ...ld(3, []),
        ...entry(3, 'dup', 'one'),
        ...entry(3, 'dup', 'two'),
        ...ld(3, [...str(1, 'first'), ...str(2, 'v'), ...str(1, 'second')]),
        ...ld(3, [...tag(1, 0), 3, ...Buffer.from('wt0'), ...str(2, 'w')]),
        ...['__proto__', 'constructor', 'toString', 'hasOwnProperty', '__defineGetter__', 'valueOf'].flatMap((k) => entry(3, k, `v-${k}`)),
      ]);
      viewOf(same(b, 'map entries'));
      assert.equal(Object.getPrototypeOf(toRequestView(fast(Buffer.from(b))).headers), null);
      const got = { headers: fast(Buffer.from(b)).attributes!.request!.http!.headers! };
      assert.equal(Object.getPrototypeOf(got.headers), null);
      assert.equal(got.headers[''], '', 'the entries without a key are the key ""; the last one (no value: "") wins');
      assert.equal(got.headers['no-value'], '');
      assert.equal(got.headers['dup'], 'two');
      assert.equal(got.headers['second'], 'v');
      assert.equal(got.headers['first'], undefined);
      assert.equal(got.headers['wt0'], 'w');
      assert.equal(got.headers['__proto__'], 'v-__proto__');
      assert.equal(got.headers['toString'], 'v-toString');
      assert.equal(got.headers['valueOf'], 'v-valueOf');
      assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), before);
      assert.equal(Object.getPrototypeOf({}), Object.prototype);
      // A request that does not carry them finds nothing under those names.
      const bare = toRequestView(fast(Buffer.from(http(entry(3, 'a', 'b')))));
      for (const k of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) assert.equal(bare.headers[k], undefined, k);
    });
  });

  describe('string tables', () => {
    /** Pairs of byte strings of length n that differ only at index 1, which the sampled hash reads for n ≤ 16 only. */
    const twins = (n: number, fill = 0x61): [Buffer, Buffer] => {
      const a = Buffer.alloc(n, fill);
      const b = Buffer.from(a);
      a[1] = 0x41;
      b[1] = 0x42;
      return [a, b];
    };

    it('ranges that share every sampled byte (same length, same hash, same slot) are told apart, at the 16, 64, 65 and 8192 byte edges', () => {
      const short = new StringTable(4096, 64);
      const long = new StringTable(128, 8192);
      for (const [table, n] of [[short, 17], [short, 63], [short, 64], [long, 65], [long, 4097], [long, 8191], [long, 8192], [long, 8193]] as const) {
        const [a, b] = twins(n);
        for (const x of [a, b, a, a, b, b, a]) assert.equal(table.decode(x, 0, n), x.toString('utf8'), `n=${n}`);
        // the same bytes at another offset of another buffer
        const padded = Buffer.concat([Buffer.from([0xff, 0x00]), b, Buffer.from([0x7a])]);
        assert.equal(table.decode(padded, 2, 2 + n), b.toString('utf8'), `n=${n} at offset 2`);
      }
    });

    it('a buffer rewritten in place after its bytes were cached (gRPC reuses buffers) decodes to its new bytes', () => {
      for (const [table, n] of [[new StringTable(1, 64), 40], [new StringTable(1, 8192), 5000]] as const) {
        const buf = Buffer.alloc(n, 0x62);
        const first = table.decode(buf, 0, n);
        buf[n >> 1] = 0x63;
        const second = table.decode(buf, 0, n);
        assert.equal(first, 'b'.repeat(n));
        assert.equal(second, buf.toString('utf8'), `n=${n}: a stale entry came back`);
      }
    });

    it('through the decoder: header values sharing their sampled bytes, call after call, are the request\'s own bytes', () => {
      for (const n of [17, 64, 65, 8192, 8193]) {
        const [a, b] = twins(n, 0x2f);
        for (const x of [a, b, a, b]) {
          const bytes = Buffer.from(http([...entry(3, 'x-forwarded-client-cert', x.toString('latin1')), ...str(4, x.toString('latin1'))]));
          const got = fast(bytes).attributes!.request!.http!;
          assert.equal(got.headers!['x-forwarded-client-cert'], x.toString('latin1'), `n=${n}`);
          assert.equal(got.path, x.toString('latin1'), `n=${n} path`);
        }
      }
    });

    it('non-UTF-8 bytes, lone surrogates and code points cut by the message end decode as protobufjs\' BufferReader#string decodes them', () => {
      const samples: Bytes[] = [
        [0xff], [0xfe], [0xef, 0xbf, 0xbd], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf, 0x61], [0xf4, 0x90, 0x80, 0x80],
        [0xf0, 0x9f, 0x98], [0xe2, 0x82], [0x61, 0x00, 0x62], [...Buffer.from('é'.repeat(31)), 0xc3], [...Buffer.from('x'.repeat(63)), 0xe2, 0x82],
        [...Buffer.from('😀'.repeat(2048))], [...Buffer.from('😀'.repeat(2048)).subarray(0, 8191)],
      ];
      const pbString = (raw: Bytes) => protobuf.Reader.create(Buffer.from([...varint(raw.length), ...raw])).string();
      for (const pass of [1, 2]) {
        for (const raw of samples) {
          const want = pbString(raw);
          const bytes = Buffer.from(http([...ld(3, [...str(1, 'x-v'), ...str(2, raw)]), ...str(5, raw)]));
          const got = fast(bytes).attributes!.request!.http!;
          assert.equal(got.headers!['x-v'], want, `pass ${pass}: ${Buffer.from(raw.slice(0, 8)).toString('hex')} (${raw.length} bytes)`);
          assert.equal(got.host, want);
          assert.equal(viewOf(same([...bytes], 'utf8')).headers['x-v'], want);
        }
      }
      // A multi-byte character cut by its message's end: the string stops at the message end in both.
      const cut = http([...tag(5, 2), ...varint(10), 0x61, 0xe2, 0x82]);
      assert.equal(fast(Buffer.from(cut)).attributes!.request!.http!.host, Buffer.from([0x61, 0xe2, 0x82]).toString());
      same(cut, 'cut code point');
    });
  });

  it('a Uint8Array view into a larger buffer decodes only its own range', () => {
    const body = http([...str(4, '/mine'), ...entry(3, 'x-a', 'b')]);
    const big = new Uint8Array(body.length + 64).fill(0x0a);
    big.set(body, 32);
    const view = new Uint8Array(big.buffer, 32, body.length);
    assert.deepEqual(plainView(toRequestView(fast(view))), viewOf(outcome(reference, Buffer.from(body))));
  });
});
