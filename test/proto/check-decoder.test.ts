/**
 * The hot-path CheckRequest decoder (proto/check-decoder.ts, its own walk over protobufjs' Reader)
 * against proto-loader's deserializer, the one it replaced: over built requests, hand-written wire bytes
 * (explicit defaults, raw header maps, int64 sizes), generated requests, both must give the same
 * RequestView, or both refuse the bytes. Over mutated and cut bytes it must do exactly what a protobufjs
 * decoder does whose unread message fields are opaque bytes (unreadAsDeclared): the same view, or a
 * refusal of both.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { createCheckRequestDecoder } from '../../ext-authz/src/proto/check-decoder.js';
import { buildCheckRequest, checkRequestForUrl } from '../../ext-authz/src/proto/check-request.js';
import { loadAuthorizationService, PROTO_FILES, PROTO_LOADER_OPTIONS, PROTO_ROOT } from '../../ext-authz/src/proto/load.js';
import type { CheckRequest } from '../../ext-authz/src/proto/types.js';
import { toRequestView, type RequestView } from '../../ext-authz/src/pipeline/request-view.js';
import { plainView } from '../support/plain-view.js';
import * as grpc from '@grpc/grpc-js';
import { loadRoot } from '../support/proto-compat.js';

const method = loadAuthorizationService().service['Check'] as grpc.MethodDefinition<CheckRequest, unknown>;
const reference = (b: Buffer) => method.requestDeserialize(b);
const encode = (r: CheckRequest) => method.requestSerialize(r);
const fast = createCheckRequestDecoder();

/**
 * The same protobufjs types with the declared fields the view never reads kept by their wire meaning only:
 * scalars as declared, messages as `bytes` (a length, then bytes that must lie inside the parent, not decoded).
 * protobufjs then consumes an unread field by its declared type whatever wire type it arrives with, as the
 * walk does, and never refuses a request over the contents of a message nobody reads.
 */
const unreadAsDeclared = (() => {
  const root = loadRoot([...PROTO_FILES], [PROTO_ROOT]);
  const opaque: Record<string, string[]> = {
    'envoy.service.auth.v3.AttributeContext': ['metadata_context', 'route_metadata_context'],
    'envoy.service.auth.v3.AttributeContext.Request': ['time'],
    'envoy.config.core.v3.Address': ['pipe', 'envoy_internal_address'],
  };
  for (const [type, fields] of Object.entries(opaque)) {
    const t = root.lookupType(type);
    for (const name of fields) {
      const f = t.fields[name]!;
      t.remove(f);
      t.add(new protobuf.Field(name, f.id, 'bytes'));
    }
  }
  const type = root.lookupType('envoy.service.auth.v3.CheckRequest');
  return (b: Buffer) => type.toObject(type.decode(b), PROTO_LOADER_OPTIONS) as CheckRequest;
})();

type Outcome = { view: RequestView } | { refused: true };


function outcome(decode: (b: Buffer) => CheckRequest, bytes: Buffer): Outcome {
  try {
    return { view: plainView(toRequestView(decode(bytes))) };
  } catch {
    return { refused: true };
  }
}

function assertSame(bytes: Buffer, what: string, against: (b: Buffer) => CheckRequest = reference): Outcome {
  const want = outcome(against, bytes);
  const got = outcome(fast, bytes);
  assert.deepStrictEqual(got, want, `${what}: the hot-path decoder's view differs from ${against === reference ? "proto-loader's" : "protobufjs' over the read fields"}`);
  return want;
}

// Field numbers of proto/envoy/service/auth/v3/attribute_context.proto and address.proto, for wire bytes
// no builder makes (explicit empty strings, raw header maps, int64 sizes).
function wire(build: (w: protobuf.Writer) => void): Buffer {
  const w = protobuf.Writer.create();
  build(w);
  return Buffer.from(w.finish());
}
const nested = (w: protobuf.Writer, field: number, build: (w: protobuf.Writer) => void) => {
  w.uint32((field << 3) | 2).fork();
  build(w);
  w.ldelim();
};
const string = (w: protobuf.Writer, field: number, v: string) => w.uint32((field << 3) | 2).string(v);
const bytesField = (w: protobuf.Writer, field: number, v: Uint8Array) => w.uint32((field << 3) | 2).bytes(v);
const mapEntry = (w: protobuf.Writer, field: number, k: string, v: string) =>
  nested(w, field, (e) => {
    string(e, 1, k);
    string(e, 2, v);
  });
// CheckRequest.attributes = 1; AttributeContext: source 1, destination 2, request 4, context_extensions 10,
// tls_session 12; Request.http = 2; HttpRequest: id 1, method 2, headers 3, path 4, host 5, scheme 6, query 7,
// fragment 8, size 9, protocol 10, body 11, raw_body 12, header_map 13; Peer: address 1, service 2, labels 3,
// principal 4, certificate 5; Address.socket_address = 1; SocketAddress: address 2, port_value 3.
const httpRequest = (build: (w: protobuf.Writer) => void) =>
  wire((w) => nested(w, 1, (a) => nested(a, 4, (r) => nested(r, 2, build))));

describe('proto/check-decoder: the hot-path CheckRequest decoder gives the view proto-loader gives', () => {
  it('built requests: defaults, principal, TCP-level, body, gateway, URL form with a peer certificate', () => {
    const cases: Array<[string, CheckRequest]> = [
      ['default', buildCheckRequest()],
      ['principal and headers', buildCheckRequest({ principal: 'spiffe://cluster.local/ns/a/sa/b', headers: { 'x-forwarded-client-cert': 'Hash=ab;Cert="x"', Cookie: 'a=1' } })],
      ['network-level', buildCheckRequest({ http: false })],
      ['raw body', buildCheckRequest({ method: 'POST', body: new Uint8Array([1, 2, 3, 0, 255]) })],
      ['gateway', buildCheckRequest({ gateway: 'secure', path: '/a/../b?x=1' })],
      ['url', checkRequestForUrl({ url: 'http://Shop.Example:8080/p?q=1#f', headers: { 'X-Mixed': 'v' }, peerCertificate: '-----BEGIN%20CERTIFICATE-----' })],
      ['empty', {}],
      ['empty attributes', { attributes: {} }],
      ['empty peers and request', { attributes: { source: {}, destination: { address: {} }, request: {}, tls_session: {} } }],
    ];
    for (const [name, request] of cases) assertSame(encode(request), name);
  });

  it('explicit empty and zero fields on the wire are told apart from absent ones exactly as proto-loader does', () => {
    // path '' sent explicitly: toObject keeps it, so the view does not fall back to :path; absent it would.
    const explicitEmpty = httpRequest((h) => {
      string(h, 4, '');
      string(h, 2, '');
      string(h, 5, '');
      mapEntry(h, 3, ':path', '/from-header');
      mapEntry(h, 3, ':method', 'post');
      mapEntry(h, 3, ':authority', 'Header.Example:443');
    });
    const view = assertSame(explicitEmpty, 'explicit empty path, method and host');
    assert.ok('view' in view);
    const absent = httpRequest((h) => {
      mapEntry(h, 3, ':path', '/from-header');
      mapEntry(h, 3, ':method', 'post');
      mapEntry(h, 3, ':authority', 'Header.Example:443');
    });
    const fromHeaders = assertSame(absent, 'absent path, method and host');
    assert.ok('view' in fromHeaders);
    assert.equal(fromHeaders.view.path, '/from-header');
    assert.equal(fromHeaders.view.method, 'post', 'the method as sent (case-sensitive)');
    assert.equal(fromHeaders.view.host, 'header.example');
    // Zero port and empty address sent explicitly, an empty principal, a zero size.
    assertSame(
      wire((w) =>
        nested(w, 1, (a) => {
          nested(a, 1, (p) => {
            nested(p, 1, (addr) => nested(addr, 1, (s) => {
              string(s, 2, '');
              s.uint32((3 << 3) | 0).uint32(0);
            }));
            string(p, 4, '');
            string(p, 5, '');
          });
          nested(a, 4, (r) => nested(r, 2, (h) => h.uint32((9 << 3) | 0).int64(0)));
        }),
      ),
      'explicit zeros',
    );
  });

  it('raw header maps (encode_raw_headers), int64 sizes past 2^53, labels, service, SNI and context extensions', () => {
    assertSame(
      httpRequest((h) => {
        nested(h, 13, (m) => {
          nested(m, 1, (hv) => {
            string(hv, 1, 'X-Raw');
            bytesField(hv, 3, Buffer.from([0x61, 0xe9, 0x00, 0x62]));
          });
          nested(m, 1, (hv) => {
            string(hv, 1, 'x-raw');
            string(hv, 2, 'second');
          });
          nested(m, 1, (hv) => string(hv, 2, 'no key'));
          nested(m, 1, () => undefined);
        });
        h.uint32((9 << 3) | 0).int64('9007199254740993');
        string(h, 11, 'text body');
        bytesField(h, 12, new Uint8Array(0));
      }),
      'raw header map',
    );
    assertSame(
      wire((w) =>
        nested(w, 1, (a) => {
          nested(a, 1, (p) => {
            string(p, 2, 'svc');
            mapEntry(p, 3, 'app', 'web');
            mapEntry(p, 3, '__proto__', 'x');
          });
          mapEntry(a, 10, 'gateway', 'public');
          mapEntry(a, 10, 'constructor', 'y');
          nested(a, 12, (t) => string(t, 1, 'sni.example'));
        }),
      ),
      'labels, extensions, sni',
    );
    // Headers both as a map and as a header_map: the map wins in the view.
    assertSame(
      httpRequest((h) => {
        mapEntry(h, 3, 'a', '1');
        nested(h, 13, (m) => nested(m, 1, (hv) => {
          string(hv, 1, 'b');
          string(hv, 2, '2');
        }));
      }),
      'both header forms',
    );
  });

  it('generated requests (fast-check) decode to the same view', () => {
    const text = fc.string({ maxLength: 12 });
    const headerName = fc.oneof(fc.constantFrom(':path', ':method', ':authority', ':scheme', 'host', 'X-Passport', 'cookie', '__proto__', 'toString'), text);
    const peer = fc.record(
      {
        address: fc.record({ socket_address: fc.record({ address: text, port_value: fc.nat(70000) }, { requiredKeys: [] }) }, { requiredKeys: [] }),
        principal: text,
        certificate: text,
        service: text,
        labels: fc.dictionary(text, text, { maxKeys: 3 }),
      },
      { requiredKeys: [] },
    );
    const http = fc.record(
      {
        id: text,
        method: fc.oneof(fc.constantFrom('GET', 'post', ''), text),
        headers: fc.dictionary(headerName, text, { maxKeys: 6 }),
        header_map: fc.record({ headers: fc.array(fc.record({ key: headerName, value: text, raw_value: fc.uint8Array({ maxLength: 6 }) }, { requiredKeys: [] }), { maxLength: 4 }) }, { requiredKeys: [] }),
        path: fc.oneof(fc.constantFrom('/', '/a/../b', '/x?y=1', '%2e%2e/'), text),
        host: text,
        scheme: text,
        query: text,
        fragment: text,
        size: fc.oneof(fc.constant('-1'), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String)),
        protocol: text,
        body: text,
        raw_body: fc.uint8Array({ maxLength: 8 }),
      },
      { requiredKeys: [] },
    );
    const request = fc.record(
      {
        attributes: fc.record(
          {
            source: peer,
            destination: peer,
            request: fc.record({ http }, { requiredKeys: [] }),
            context_extensions: fc.dictionary(fc.oneof(fc.constant('gateway'), text), text, { maxKeys: 3 }),
            tls_session: fc.record({ sni: text }, { requiredKeys: [] }),
          },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(request, (r) => {
        assertSame(encode(r as CheckRequest), 'generated');
      }),
      { numRuns: 400 },
    );
  });

  it('mutated and cut bytes: exactly what protobufjs does with the unread messages as opaque bytes (same view, or both refuse)', () => {
    const seeds = [
      encode(buildCheckRequest({ principal: 'p', headers: { 'x-forwarded-client-cert': 'Hash=00', 'x-a': 'b' }, gateway: 'app', body: new Uint8Array([9, 9]) })),
      encode(buildCheckRequest({ http: false })),
      encode(checkRequestForUrl({ url: 'http://shop.example:8080/p?q=1#f', headers: { 'x-b': 'c' }, peerCertificate: 'x'.repeat(80) })),
      // Raw header map, an int64 size, labels, extensions, SNI, and metadata (field 11) the walk skips.
      wire((w) =>
        nested(w, 1, (a) => {
          nested(a, 1, (p) => {
            nested(p, 1, (addr) => nested(addr, 1, (sa) => {
              string(sa, 2, '10.0.0.1');
              sa.uint32((3 << 3) | 0).uint32(443);
            }));
            mapEntry(p, 3, 'app', 'web');
          });
          nested(a, 4, (r) => nested(r, 2, (h) => {
            nested(h, 13, (m) => nested(m, 1, (hv) => {
              string(hv, 1, 'x-raw');
              bytesField(hv, 3, Buffer.from([0x61, 0xe9]));
            }));
            h.uint32((9 << 3) | 0).int64('123456789');
            string(h, 8, 'fragment');
          }));
          mapEntry(a, 10, 'gateway', 'public');
          nested(a, 11, (md) => mapEntry(md, 1, 'f', ''));
          nested(a, 12, (t) => string(t, 1, 'sni.example'));
        }),
      ),
    ];
    let refused = 0;
    let answered = 0;
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), (seed, flips, cut) => {
        const b = Buffer.from(seed);
        for (const [at, v] of flips) b[at % b.length] = v;
        const bytes = cut % 5 === 0 ? b.subarray(0, cut % b.length) : b;
        if ('refused' in assertSame(bytes, 'mutated', unreadAsDeclared)) refused++;
        else answered++;
      }),
      { numRuns: 1000 },
    );
    assert.ok(refused > 0 && answered > 0, `${refused} refused, ${answered} answered: the mutations must reach both outcomes`);
  });

  it('a varint or tag that would run past the end of its nested message is refused, as protobufjs refuses it (its Reader stops at the message limit)', () => {
    // SocketAddress { port_value: <varint whose last byte inside the message says "more follows"> }, then
    // one more byte of the enclosing Address, which the port must not read as its own.
    const field = (n: number, content: number[]) => [(n << 3) | 2, content.length, ...content];
    const socketAddress = [(3 << 3) | 0, 0xbb, 0x83];
    const addressContent = [...field(1, socketAddress), 0x01];
    const bytes = Buffer.from(field(1, field(1, field(1, addressContent))));
    assert.deepEqual(assertSame(bytes, 'port past its message', unreadAsDeclared), { refused: true });
    assert.deepEqual(assertSame(bytes, 'port past its message'), { refused: true });
    // A tag that runs past the end of a map entry (HttpRequest.headers), into the HttpRequest's next byte.
    const httpContent = [...field(3, [(1 << 3) | 2, 1, 0x61, 0x90]), 0x01];
    const all = Buffer.from(field(1, field(4, field(2, httpContent))));
    assert.deepEqual(assertSame(all, 'map entry tag past its end', unreadAsDeclared), { refused: true });
  });

  it('maps have no prototype: a header named constructor, toString or __proto__ is an own value, an absent name finds nothing', () => {
    const bytes = httpRequest((h) => {
      mapEntry(h, 3, 'constructor', 'c');
      mapEntry(h, 3, '__proto__', 'p');
      mapEntry(h, 3, 'x-a', 'a');
    });
    const view = toRequestView(fast(bytes));
    assert.equal(Object.getPrototypeOf(view.headers), null);
    assert.equal(view.headers['constructor'], 'c');
    assert.equal(view.headers['__proto__'], 'p');
    assert.equal(view.headers['toString'], undefined);
    assert.deepEqual(Object.keys(view.headers), ['constructor', '__proto__', 'x-a']);
  });

  it('strings the string tables hand out again are exactly the request\'s own (short and long values, one byte changed mid-value)', () => {
    const xfcc = `Hash=${'ab'.repeat(32)};Cert="${'%2F'.repeat(200)}"`;
    const one = fast(encode(buildCheckRequest({ headers: { 'x-forwarded-client-cert': xfcc, 'x-n': '1' } })));
    const two = fast(encode(buildCheckRequest({ headers: { 'x-forwarded-client-cert': xfcc, 'x-n': '2' } })));
    const h1 = one.attributes!.request!.http!.headers!;
    const h2 = two.attributes!.request!.http!.headers!;
    assert.equal(h1['x-n'], '1');
    assert.equal(h2['x-n'], '2');
    assert.equal(h2['x-forwarded-client-cert'], xfcc);
    // One character changed at the middle of a long value (the long table hashes its ends only).
    const mid = xfcc.length >> 1;
    const other = `${xfcc.slice(0, mid)}X${xfcc.slice(mid + 1)}`;
    const three = fast(encode(buildCheckRequest({ headers: { 'x-forwarded-client-cert': other } })));
    assert.equal(three.attributes!.request!.http!.headers!['x-forwarded-client-cert'], other);
  });
});
