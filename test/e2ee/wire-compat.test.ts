/**
 * Proves our hand-written ext_proc v3 protos (proto/envoy/service/ext_proc,
 * proto/envoy/extensions/filters/http/ext_proc) wire compatible with the
 * official ones shipped in @grpc/grpc-js-xds: structure, byte-identical
 * encoding both ways for every message the processor reads or writes, and a
 * real Process stream over loopback in both directions.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS, PROTO_ROOT } from '../../ext-authz/src/proto/load.js';
import { EXT_PROC_PROTO_FILES, EXT_PROC_SERVICE_NAME, loadExtProcService, type ProcessingRequest, type ProcessingResponse } from '../../ext-authz/src/e2ee/ext-proc-proto.js';
import { immediateDenial } from '../../ext-authz/src/e2ee/processor.js';
import { OFFICIAL_INCLUDE_DIRS, PROTOBUFJS_DIR, assertWireIdentical, canonical, collectDefined, compareRoots, loadRoot, methodOf } from '../support/proto-compat.js';

const OFFICIAL_ENTRY = 'envoy/service/ext_proc/v3/external_processor.proto';
const officialRoot = loadRoot([OFFICIAL_ENTRY], [...OFFICIAL_INCLUDE_DIRS, PROTOBUFJS_DIR]);
const oursRoot = loadRoot([...EXT_PROC_PROTO_FILES], [PROTO_ROOT]);
const officialPkg: PackageDefinition = protoLoader.loadSync(OFFICIAL_ENTRY, { ...PROTO_LOADER_OPTIONS, includeDirs: OFFICIAL_INCLUDE_DIRS });
const ours = loadExtProcService();
const officialService = officialPkg[EXT_PROC_SERVICE_NAME] as unknown as grpc.ServiceDefinition;
const OURS = methodOf(ours.service, 'Process');
const OFFICIAL = methodOf(officialService, 'Process');
const REQ = oursRoot.lookupType('envoy.service.ext_proc.v3.ProcessingRequest');
const RES = oursRoot.lookupType('envoy.service.ext_proc.v3.ProcessingResponse');

const raw = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) });
const set = (key: string, value: string) => ({ header: raw(key, value), append: { value: false }, append_action: 2 });

const requests: Array<[string, ProcessingRequest]> = [
  ['request_headers (raw_value and value, end_of_stream)', {
    request_headers: { headers: { headers: [raw(':path', '/api/orders'), { key: 'content-type', value: 'application/vnd.passgate.e2ee' }] }, end_of_stream: true },
    metadata_context: { filter_metadata: { 'envoy.filters.http.ext_proc': { fields: { a: { stringValue: 'b' } } } } },
    attributes: { 'envoy.filters.http.ext_proc': { fields: { 'request.path': { stringValue: '/api/orders' } } } },
  }],
  ['request_body (bytes, end_of_stream)', { request_body: { body: Buffer.from([0x01, 0x00, 0x20, 0xff, 0x00, 0x7b]), end_of_stream: true }, observability_mode: true }],
  ['response_headers', { response_headers: { headers: { headers: [raw(':status', '200'), raw('content-type', 'application/json')] } } }],
  ['response_body', { response_body: { body: Buffer.from('{"ok":true}'), end_of_stream: true } }],
  ['request_trailers', { request_trailers: { trailers: { headers: [raw('grpc-status', '0')] } } }],
  ['response_trailers', { response_trailers: { trailers: { headers: [raw('x-t', '1')] } } }],
];

const responses: Array<[string, ProcessingResponse]> = [
  ['headers answer with mode_override (BUFFERED, SKIP) and removals', {
    request_headers: { response: { status: 0, header_mutation: { remove_headers: ['x-passgate-e2ee'] }, clear_route_cache: true } },
    mode_override: { request_header_mode: 1, response_header_mode: 2, request_body_mode: 2, response_body_mode: 3, request_trailer_mode: 2, response_trailer_mode: 1 },
    override_message_timeout: { seconds: '1', nanos: 500 },
  }],
  ['body answer: body mutation, content-length, content-type (CONTINUE_AND_REPLACE)', {
    request_body: { response: { status: 1, header_mutation: { set_headers: [set('content-length', '17'), set('content-type', 'application/json')] }, body_mutation: { body: Buffer.from('{"item":"book"}') } } },
    dynamic_metadata: { fields: { app: { stringValue: 'ios' } } },
  }],
  ['response body answer with clear_body and trailers', { response_body: { response: { body_mutation: { clear_body: true }, trailers: { headers: [raw('x', 'y')] } } } }],
  ['trailers answers', { request_trailers: { header_mutation: { set_headers: [set('a', 'b')] } } }],
  ['response_headers answer', { response_headers: { response: { status: 0, header_mutation: { set_headers: [set('cache-control', 'no-store')] } } } }],
  ['response_trailers answer', { response_trailers: { header_mutation: { remove_headers: ['x-internal-trailer'] } } }],
  ['our immediate denial (the Check denial body)', immediateDenial(400, 'e2ee_decrypt_failed', '4bf92f3577b34da6a3ce929d0e0e4736')],
  ['immediate response with grpc_status', { immediate_response: { status: { code: 503 }, body: Buffer.from('x'), grpc_status: { status: 14 }, details: 'passgate_x' } }],
];

describe('e2ee: ext_proc v3 protos are wire compatible with the official ones', () => {
  it('every message, enum and service we define matches upstream (ids, types, labels, oneofs, enum values)', () => {
    assert.deepEqual(compareRoots(oursRoot, officialRoot), []);
    const names = collectDefined(oursRoot).messages.map((m) => m.fullName).filter((n) => n.includes('ext_proc'));
    assert.ok(names.includes('.envoy.service.ext_proc.v3.ProcessingRequest') && names.includes('.envoy.extensions.filters.http.ext_proc.v3.ProcessingMode'));
  });

  for (const [name, msg] of requests) it(`ProcessingRequest ${name}: byte-identical both ways`, () => assertWireIdentical(OURS, OFFICIAL, 'request', REQ, msg));
  for (const [name, msg] of responses) it(`ProcessingResponse ${name}: byte-identical both ways`, () => assertWireIdentical(OURS, OFFICIAL, 'response', RES, msg));

  describe('Process streams over loopback', () => {
    const echo: grpc.handleBidiStreamingCall<ProcessingRequest, ProcessingResponse> = (call) => {
      call.on('data', (m: ProcessingRequest) => {
        if (m.request === 'request_headers') call.write({ request_headers: { response: { status: 0 } }, mode_override: { request_body_mode: 2 } });
        else if (m.request === 'request_body') call.write({ request_body: { response: { body_mutation: { body: Buffer.from(`len=${m.request_body?.body?.length}`) } } } });
      });
      call.on('end', () => call.end());
    };
    const clientOf = (pkg: PackageDefinition): grpc.ServiceClientConstructor =>
      (grpc.loadPackageDefinition(pkg) as unknown as { envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } } }).envoy.service.ext_proc.v3.ExternalProcessor;

    const pairs: Array<[string, grpc.ServiceDefinition, PackageDefinition]> = [
      ['server on OUR definition, client from the OFFICIAL protos', ours.service, officialPkg],
      ['server on the OFFICIAL definition, client from OUR protos', officialService, ours.packageDefinition],
    ];
    for (const [name, serverDef, clientPkg] of pairs) {
      it(name, async () => {
        const server = new grpc.Server();
        server.addService(serverDef, { Process: echo });
        const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
        const Ctor = clientOf(clientPkg);
        const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Process(): grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse> };
        try {
          const answers = await new Promise<ProcessingResponse[]>((resolve, reject) => {
            const call = client.Process();
            const got: ProcessingResponse[] = [];
            call.on('data', (r: ProcessingResponse) => {
              got.push(r);
              if (got.length === 1) call.write({ request_body: { body: Buffer.alloc(300, 7), end_of_stream: true } });
              else call.end();
            });
            call.on('end', () => resolve(got));
            call.on('error', reject);
            call.write(requests[0]![1]);
          });
          assert.equal(answers[0]!.response, 'request_headers');
          assert.equal(answers[0]!.mode_override?.request_body_mode, 2);
          assert.deepEqual(canonical(answers[1], RES), { request_body: { response: { body_mutation: { body: Buffer.from('len=300') } } } });
        } finally {
          client.close();
          server.forceShutdown();
        }
      });
    }
  });
});
