/**
 * Proves that Passgate's hand-written ext_authz v3 protos (proto/) are wire
 * compatible with the official Envoy data-plane-api protos shipped in
 * @grpc/grpc-js-xds/deps: structural comparison of every field/enum we define,
 * encode/decode in both directions with the production proto-loader options,
 * and real gRPC calls over loopback in both directions.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type protobuf from 'protobufjs';
import * as grpc from '@grpc/grpc-js';
import { H2GrpcServer } from '../../ext-authz/src/transport/server.js';
import * as protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';
import {
  AUTHORIZATION_SERVICE_NAME,
  CHECK_METHOD_PATH,
  PROTO_FILES,
  PROTO_LOADER_OPTIONS,
  PROTO_ROOT,
  findProtoRoot,
  loadAuthorizationService,
} from '../../ext-authz/src/proto/load.js';
import type { CheckRequest, CheckResponse, HeaderValueOption } from '../../ext-authz/src/proto/types.js';
import { HeaderAppendAction } from '../../ext-authz/src/proto/types.js';
import {
  OFFICIAL_INCLUDE_DIRS,
  PROTOBUFJS_DIR,
  assertWireIdentical as assertIdentical,
  canonical,
  collectDefined,
  compareRoots as compareWith,
  loadRoot,
  methodOf,
  type KnownExtraField,
} from '../support/proto-compat.js';

// ---------------------------------------------------------------------------
// Loading both sides
// ---------------------------------------------------------------------------

const OFFICIAL_ENTRY = 'envoy/service/auth/v3/external_auth.proto';
const officialRoot = loadRoot([OFFICIAL_ENTRY], [...OFFICIAL_INCLUDE_DIRS, PROTOBUFJS_DIR]);
const oursRoot = loadRoot([...PROTO_FILES], [PROTO_ROOT]);

const officialPkg: PackageDefinition = protoLoader.loadSync(OFFICIAL_ENTRY, {
  ...PROTO_LOADER_OPTIONS,
  includeDirs: OFFICIAL_INCLUDE_DIRS,
});
const ours = loadAuthorizationService();

const officialService = officialPkg[AUTHORIZATION_SERVICE_NAME] as unknown as grpc.ServiceDefinition;
const OUR_CHECK = methodOf(ours.service, 'Check');
const OFFICIAL_CHECK = methodOf(officialService, 'Check');

// ---------------------------------------------------------------------------
// Structural comparison
// ---------------------------------------------------------------------------

/** Fields we define on purpose although the shipped upstream copy lacks them. */
const KNOWN_EXTRA_FIELDS: Record<string, KnownExtraField> = {
  // Added in newer Envoy releases; not in the data-plane-api snapshot bundled with grpc-js-xds.
  '.envoy.service.auth.v3.CheckResponse.error_response': {
    id: 5,
    type: '.envoy.service.auth.v3.DeniedHttpResponse',
    oneof: 'http_response',
  },
};

const compareRoots = (mine: protobuf.Root, official: protobuf.Root): string[] => compareWith(mine, official, KNOWN_EXTRA_FIELDS);

const REQUEST_TYPE = oursRoot.lookupType('envoy.service.auth.v3.CheckRequest');
const RESPONSE_TYPE = oursRoot.lookupType('envoy.service.auth.v3.CheckResponse');

function assertWireIdentical(direction: 'request' | 'response', input: CheckRequest | CheckResponse): void {
  assertIdentical(OUR_CHECK, OFFICIAL_CHECK, direction, direction === 'request' ? REQUEST_TYPE : RESPONSE_TYPE, input);
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

const PEM = '-----BEGIN%20CERTIFICATE-----%0AMIIBszCCAVmgAwIBAgIU%0A-----END%20CERTIFICATE-----%0A';

function fullCheckRequest(): CheckRequest {
  return {
    attributes: {
      source: {
        address: {
          socket_address: {
            protocol: 1, // UDP: non-default so it must travel on the wire
            address: '203.0.113.7',
            port_value: 51234,
            resolver_name: 'custom-resolver',
            ipv4_compat: true,
          },
        },
        service: 'client.example',
        labels: { app: 'frontend', version: 'v2' },
        principal: 'spiffe://cluster.local/ns/edge/sa/client',
        certificate: PEM,
      },
      destination: {
        address: { socket_address: { address: '10.0.0.12', port_value: 8443 } },
        service: 'api.internal',
        labels: { app: 'api' },
        principal: 'spiffe://cluster.local/ns/api/sa/api',
        certificate: PEM,
      },
      request: {
        time: { seconds: '1700000000', nanos: 123456789 },
        http: {
          id: '9f3c5e2a-1b2c-4d5e-8f90-0123456789ab',
          method: 'POST',
          headers: {
            ':authority': 'api.example.com',
            ':method': 'POST',
            ':path': '/v1/things?x=1',
            authorization: 'Bearer abc.def.ghi',
            'x-forwarded-client-cert': 'By=spiffe://a;Hash=00ff;Subject="CN=c,O=o";URI=spiffe://c',
          },
          header_map: {
            headers: [
              { key: ':authority', value: 'api.example.com' },
              { key: 'cookie', value: 'a=1' },
              { key: 'cookie', value: 'b=2' },
              { key: 'x-bin', raw_value: Buffer.from([0xde, 0xad, 0xbe, 0xef]) },
            ],
          },
          path: '/v1/things?x=1',
          host: 'api.example.com',
          scheme: 'https',
          query: 'x=1',
          fragment: 'frag',
          size: '9007199254740993', // > 2^53: must survive as an int64 string
          protocol: 'HTTP/2',
          body: '{"hello":"world"}',
          raw_body: Buffer.from([0x00, 0x01, 0xfe, 0xff, 0x7b]),
        },
      },
      context_extensions: { tenant: 'acme', route: 'api-v1' },
      metadata_context: {
        filter_metadata: {
          'envoy.filters.http.jwt_authn': {
            fields: {
              sub: { stringValue: 'alice' },
              exp: { numberValue: 1700003600 },
              admin: { boolValue: true },
              nothing: { nullValue: 0 },
              nested: { structValue: { fields: { k: { stringValue: 'v' } } } },
              list: { listValue: { values: [{ stringValue: 'a' }, { numberValue: 2.5 }] } },
            },
          },
        },
        typed_filter_metadata: {
          'envoy.typed': {
            type_url: 'type.googleapis.com/google.protobuf.StringValue',
            value: Buffer.from([0x0a, 0x03, 0x61, 0x62, 0x63]),
          },
        },
      },
      route_metadata_context: {
        filter_metadata: { 'passgate.route': { fields: { policy: { stringValue: 'strict' } } } },
      },
      tls_session: { sni: 'api.example.com' },
    },
  };
}

/** Exercises the other Address oneof members and named_port. */
function altAddressCheckRequest(): CheckRequest {
  return {
    attributes: {
      source: { address: { pipe: { path: '/var/run/envoy.sock', mode: 0o660 } } },
      destination: {
        address: { envoy_internal_address: { server_listener_name: 'internal_listener', endpoint_id: 'ep-1' } },
      },
      request: { time: { seconds: '1', nanos: 1 } }, // TCP-level check: no http
      context_extensions: { x: 'y' },
    },
  };
}

function namedPortCheckRequest(): CheckRequest {
  return {
    attributes: {
      destination: { address: { socket_address: { address: 'svc.local', named_port: 'https' } } },
    },
  };
}

const overwrite = (key: string, value: string): HeaderValueOption => ({
  header: { key, value },
  append: { value: false },
  append_action: HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
});

function okResponse(): CheckResponse {
  return {
    status: { code: 0, message: 'allowed' },
    ok_response: {
      headers: [
        overwrite('x-passgate-user', 'alice'),
        { header: { key: 'x-append', value: 'more' }, append: { value: true }, append_action: HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD },
        { header: { key: 'x-if-absent', value: '1' }, append_action: HeaderAppendAction.ADD_IF_ABSENT, keep_empty_value: true },
        { header: { key: 'x-raw', raw_value: Buffer.from('raw-bytes') }, append_action: HeaderAppendAction.OVERWRITE_IF_EXISTS },
      ],
      headers_to_remove: ['authorization', 'x-forwarded-client-cert'],
      dynamic_metadata: { fields: { legacy: { boolValue: true } } },
      response_headers_to_add: [overwrite('set-cookie', 'sid=1; Secure'), overwrite('x-trace', 't-1')],
      query_parameters_to_set: [{ key: 'tenant', value: 'acme' }, { key: 'empty', value: '' }],
      query_parameters_to_remove: ['token', 'access_token'],
    },
    dynamic_metadata: {
      fields: {
        user: { stringValue: 'alice' },
        roles: { listValue: { values: [{ stringValue: 'admin' }, { stringValue: 'dev' }] } },
      },
    },
  };
}

function deniedResponse(code: number): CheckResponse {
  return {
    status: { code: code === 503 ? 14 : code === 429 ? 8 : code === 401 ? 16 : 7, message: `denied ${code}` },
    denied_response: {
      status: { code },
      headers: [
        overwrite('www-authenticate', 'Bearer realm="passgate"'),
        { header: { key: 'set-cookie', value: 'a=1' } },
        { header: { key: 'set-cookie', value: 'b=2' } },
        overwrite('content-type', 'application/json'),
      ],
      body: `{"error":"http_${code}"}`,
    },
    dynamic_metadata: { fields: { reason: { stringValue: `r${code}` } } },
  };
}

function statusOnlyResponse(): CheckResponse {
  return {
    status: {
      code: 7,
      message: 'permission denied',
      details: [{ type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from([0x0a, 0x01, 0x78]) }],
    },
  };
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe('proto/ wire compatibility with official Envoy ext_authz v3 protos', () => {
  describe('loading', () => {
    it('locates PROTO_ROOT containing every PROTO_FILES entry', () => {
      assert.equal(findProtoRoot(join(PROTO_ROOT, 'envoy', 'service')), PROTO_ROOT);
      for (const f of PROTO_FILES) assert.ok(existsSync(join(PROTO_ROOT, f)), `${f} missing`);
      assert.ok(existsSync(join(dirname(PROTO_ROOT), 'package.json')));
    });

    it('loadAuthorizationService is memoized and exposes Check on the Envoy path', () => {
      const again = loadAuthorizationService();
      assert.equal(again, ours);
      assert.deepEqual(Object.keys(ours.service), ['Check']);
      assert.equal(OUR_CHECK.path, CHECK_METHOD_PATH);
      assert.equal(OFFICIAL_CHECK.path, CHECK_METHOD_PATH);
      assert.ok(ours.packageDefinition['envoy.service.auth.v3.CheckRequest']);
      assert.ok(ours.packageDefinition['envoy.type.v3.HttpStatus']);
    });
  });

  describe('structure', () => {
    it('every message, enum and service we define matches upstream (ids, types, labels, oneofs, enum values)', () => {
      assert.deepEqual(compareRoots(oursRoot, officialRoot), []);
    });

    it('defines exactly the expected set of types', () => {
      const d = collectDefined(oursRoot);
      assert.deepEqual(d.messages.map((t) => t.fullName).sort(), [
        '.envoy.config.core.v3.Address',
        '.envoy.config.core.v3.EnvoyInternalAddress',
        '.envoy.config.core.v3.HeaderMap',
        '.envoy.config.core.v3.HeaderValue',
        '.envoy.config.core.v3.HeaderValueOption',
        '.envoy.config.core.v3.Metadata',
        '.envoy.config.core.v3.Pipe',
        '.envoy.config.core.v3.QueryParameter',
        '.envoy.config.core.v3.SocketAddress',
        '.envoy.service.auth.v3.AttributeContext',
        '.envoy.service.auth.v3.AttributeContext.HttpRequest',
        '.envoy.service.auth.v3.AttributeContext.Peer',
        '.envoy.service.auth.v3.AttributeContext.Request',
        '.envoy.service.auth.v3.AttributeContext.TLSSession',
        '.envoy.service.auth.v3.CheckRequest',
        '.envoy.service.auth.v3.CheckResponse',
        '.envoy.service.auth.v3.DeniedHttpResponse',
        '.envoy.service.auth.v3.OkHttpResponse',
        '.envoy.type.v3.HttpStatus',
        '.google.rpc.Status',
      ]);
      assert.deepEqual(d.enums.map((e) => e.fullName).sort(), [
        '.envoy.config.core.v3.HeaderValueOption.HeaderAppendAction',
        '.envoy.config.core.v3.SocketAddress.Protocol',
        '.envoy.type.v3.StatusCode',
      ]);
      assert.deepEqual(d.services.map((s) => s.fullName), ['.envoy.service.auth.v3.Authorization']);
    });

    it('StatusCode has every upstream HTTP code (and Empty = 0)', () => {
      const mine = oursRoot.lookupEnum('envoy.type.v3.StatusCode').values;
      const up = officialRoot.lookupEnum('envoy.type.v3.StatusCode').values;
      assert.deepEqual({ ...mine }, { ...up });
      assert.equal(mine['Empty'], 0);
      assert.equal(mine['TooManyRequests'], 429);
      assert.equal(mine['NetworkAuthenticationRequired'], 511);
      assert.ok(Object.keys(mine).length >= 50, `only ${Object.keys(mine).length} codes`);
    });

    it('error_response: shipped upstream copy state is what the compatibility notes claim', () => {
      const up = officialRoot.lookupType('envoy.service.auth.v3.CheckResponse');
      const mine = RESPONSE_TYPE.fields['error_response'];
      assert.ok(mine, 'ours defines error_response');
      assert.equal(mine.id, 5);
      assert.equal(mine.partOf?.name, 'http_response');
      // If a future grpc-js-xds ships it, compareRoots checks it like any other field.
      const upField = up.fields['error_response'];
      if (upField) assert.equal(upField.id, 5);
      else assert.equal(up.fieldsById[5], undefined);
    });

    it('the comparator catches a tampered field number, type and enum value', () => {
      const dir = mkdtempSync(join(tmpdir(), 'passgate-proto-'));
      try {
        cpSync(PROTO_ROOT, dir, { recursive: true });
        const ac = join(dir, 'envoy/service/auth/v3/attribute_context.proto');
        const text = readFileSync(ac, 'utf8');
        const tampered = text
          .replace('string principal = 4;', 'string principal = 6;')
          .replace('int64 size = 9;', 'int32 size = 9;');
        assert.notEqual(tampered, text);
        writeFileSync(ac, tampered);
        const st = join(dir, 'envoy/type/v3/http_status.proto');
        writeFileSync(st, readFileSync(st, 'utf8').replace('TooManyRequests = 429;', 'TooManyRequests = 430;'));
        const problems = compareRoots(loadRoot([...PROTO_FILES], [dir]), officialRoot);
        assert.ok(problems.some((p) => p.includes('Peer.principal: id 6 != upstream 4')), problems.join('\n'));
        assert.ok(problems.some((p) => p.includes('HttpRequest.size: type int32 != upstream int64')), problems.join('\n'));
        assert.ok(problems.some((p) => p.startsWith('.envoy.type.v3.StatusCode: values')), problems.join('\n'));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('CheckRequest encoding', () => {
    const cases: Array<[string, () => CheckRequest]> = [
      ['fully populated HTTP request', fullCheckRequest],
      ['pipe / envoy_internal_address, no http (TCP check)', altAddressCheckRequest],
      ['socket address with named_port', namedPortCheckRequest],
    ];
    for (const [name, make] of cases) {
      it(`${name}: ours -> official and official -> ours, byte-identical`, () => assertWireIdentical('request', make()));
    }

    it('decodes the shapes ./types.ts documents (int64 string, Buffer bytes, oneof markers, camelCase Value)', () => {
      const d = OUR_CHECK.requestDeserialize(OFFICIAL_CHECK.requestSerialize(fullCheckRequest())) as CheckRequest;
      const http = d.attributes?.request?.http;
      assert.equal(http?.size, '9007199254740993');
      assert.ok(Buffer.isBuffer(http?.raw_body));
      assert.equal(d.attributes?.request?.time?.seconds, '1700000000');
      assert.equal(d.attributes?.source?.address?.socket_address?.port_value, 51234);
      assert.equal(d.attributes?.source?.address?.address, 'socket_address');
      assert.equal(d.attributes?.source?.address?.socket_address?.port_specifier, 'port_value');
      assert.equal(
        d.attributes?.metadata_context?.filter_metadata?.['envoy.filters.http.jwt_authn']?.fields?.['sub']?.stringValue,
        'alice',
      );
      const empty = OUR_CHECK.requestDeserialize(OFFICIAL_CHECK.requestSerialize({ attributes: {} })) as CheckRequest;
      assert.deepStrictEqual(empty, { attributes: {} }); // defaults: false => absent, not empty maps
    });
  });

  describe('CheckResponse encoding', () => {
    const cases: Array<[string, () => CheckResponse]> = [
      ['ok_response (headers, append=false, append_action, removals, query params, metadata)', okResponse],
      ['denied_response 401', () => deniedResponse(401)],
      ['denied_response 403', () => deniedResponse(403)],
      ['denied_response 429', () => deniedResponse(429)],
      ['denied_response 503', () => deniedResponse(503)],
      ['status only (code/message/details)', statusOnlyResponse],
    ];
    for (const [name, make] of cases) {
      it(`${name}: ours -> official and official -> ours, byte-identical`, () => assertWireIdentical('response', make()));
    }

    it('append {value:false} is present on the wire (has_append) and denied status code is exact', () => {
      const ok = OFFICIAL_CHECK.responseDeserialize(OUR_CHECK.responseSerialize(okResponse())) as CheckResponse;
      assert.equal(ok.http_response, 'ok_response');
      assert.deepStrictEqual(ok.ok_response?.headers?.[0]?.append, { value: false });
      assert.equal(ok.ok_response?.headers?.[0]?.append_action, 2);
      assert.equal(ok.ok_response?.headers?.[2]?.append, undefined);
      for (const code of [401, 403, 429, 503]) {
        const d = OFFICIAL_CHECK.responseDeserialize(OUR_CHECK.responseSerialize(deniedResponse(code))) as CheckResponse;
        assert.equal(d.http_response, 'denied_response');
        assert.equal(d.denied_response?.status?.code, code);
      }
    });

    it('error_response (field 5) round-trips on ours and is skipped as an unknown field by the shipped upstream copy', () => {
      const input: CheckResponse = {
        status: { code: 14, message: 'backend down' },
        error_response: { status: { code: 503 }, body: 'unavailable' },
        dynamic_metadata: { fields: { e: { boolValue: true } } },
      };
      const bytes = OUR_CHECK.responseSerialize(input);
      const mine = OUR_CHECK.responseDeserialize(bytes) as CheckResponse;
      assert.equal(mine.http_response, 'error_response');
      assert.deepStrictEqual(canonical(mine, RESPONSE_TYPE), canonical(input, RESPONSE_TYPE));
      const up = OFFICIAL_CHECK.responseDeserialize(bytes) as CheckResponse;
      if (!officialRoot.lookupType('envoy.service.auth.v3.CheckResponse').fields['error_response']) {
        assert.deepStrictEqual(up, {
          status: { code: 14, message: 'backend down' },
          dynamic_metadata: { fields: { e: { boolValue: true, kind: 'boolValue' } } },
        });
      }
    });
  });

  describe('gRPC over loopback', () => {
    type CheckCallback = (err: grpc.ServiceError | null, res?: CheckResponse) => void;
    interface AuthorizationClient extends grpc.Client {
      Check(req: CheckRequest, opts: grpc.CallOptions, cb: CheckCallback): grpc.ClientUnaryCall;
    }

    let received: CheckRequest | undefined;
    const echoHandler: grpc.handleUnaryCall<CheckRequest, CheckResponse> = (call, callback) => {
      received = call.request;
      const attrs = call.request.attributes;
      const http = attrs?.request?.http;
      callback(null, {
        status: { code: 0 },
        ok_response: {
          headers: [
            overwrite('x-echo-path', http?.path ?? ''),
            overwrite('x-echo-principal', attrs?.source?.principal ?? ''),
            overwrite('x-echo-tenant', attrs?.context_extensions?.['tenant'] ?? ''),
          ],
          headers_to_remove: ['authorization'],
        },
        dynamic_metadata: {
          fields: {
            method: { stringValue: http?.method ?? '' },
            size: { stringValue: String(http?.size ?? '') },
            sni: { stringValue: attrs?.tls_session?.sni ?? '' },
          },
        },
      });
    };

    const expected = {
      status: { code: 0 }, // protobufjs writes explicitly-set zero scalars
      http_response: 'ok_response',
      ok_response: {
        headers: [
          { header: { key: 'x-echo-path', value: '/v1/things?x=1' }, append: { value: false }, append_action: 2 },
          {
            header: { key: 'x-echo-principal', value: 'spiffe://cluster.local/ns/edge/sa/client' },
            append: { value: false },
            append_action: 2,
          },
          { header: { key: 'x-echo-tenant', value: 'acme' }, append: { value: false }, append_action: 2 },
        ],
        headers_to_remove: ['authorization'],
      },
      dynamic_metadata: {
        fields: {
          method: { stringValue: 'POST', kind: 'stringValue' },
          size: { stringValue: '9007199254740993', kind: 'stringValue' },
          sni: { stringValue: 'api.example.com', kind: 'stringValue' },
        },
      },
    };

    /** The same handler on either transport Passgate serves with (server.transport). */
    async function startServer(service: grpc.ServiceDefinition, transport: 'grpc-js' | 'h2'): Promise<{ server: { forceShutdown(): void }; port: number }> {
      if (transport === 'h2') {
        const server = new H2GrpcServer({ maxMessageBytes: 4 * 1024 * 1024 });
        server.addService(service, { Check: echoHandler });
        return { server, port: await server.listen('127.0.0.1', 0) };
      }
      const server = new grpc.Server();
      server.addService(service, { Check: echoHandler });
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
          err ? reject(err) : resolve(p),
        );
      });
      return { server, port };
    }

    function call(client: AuthorizationClient, req: CheckRequest): Promise<CheckResponse> {
      return new Promise((resolve, reject) => {
        client.Check(req, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res ?? {})));
      });
    }

    function clientCtorFrom(pkg: PackageDefinition): grpc.ServiceClientConstructor {
      const loaded = grpc.loadPackageDefinition(pkg) as unknown as {
        envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
      };
      return loaded.envoy.service.auth.v3.Authorization;
    }

    const cleanup: Array<() => void> = [];
    afterEach(() => {
      while (cleanup.length) cleanup.pop()?.();
      received = undefined;
    });

    const pairs: Array<[string, grpc.ServiceDefinition, PackageDefinition]> = [
      ['server on OUR service definition answers a client built from the OFFICIAL protos', ours.service, officialPkg],
      ['server on the OFFICIAL service definition answers a client built from OUR protos', officialService, ours.packageDefinition],
    ];
    const runs = (['grpc-js', 'h2'] as const).flatMap((transport) => pairs.map((p) => [transport, ...p] as const));
    for (const [transport, name, serverDef, clientPkg] of runs) {
      it(`${name} (transport ${transport})`, async () => {
        const { server, port } = await startServer(serverDef, transport);
        cleanup.push(() => server.forceShutdown());
        const Ctor = clientCtorFrom(clientPkg);
        const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as AuthorizationClient;
        cleanup.push(() => client.close());

        const req = fullCheckRequest();
        const res = await call(client, req);
        assert.deepStrictEqual(res, expected);
        assert.deepStrictEqual(canonical(received, REQUEST_TYPE), canonical(req, REQUEST_TYPE));
      });
    }
  });
});
