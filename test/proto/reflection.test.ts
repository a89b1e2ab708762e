/**
 * Server reflection as grpcurl uses it: list, describe, then build a strict
 * descriptor pool from nothing but what reflection returned (a missing import
 * is an error, as in grpcurl) and call Check and Health through that pool
 * with dynamic messages sent as raw bytes over a real grpc-js client. The
 * Check request is the README's own grpcurl JSON, so the README stays true.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { create, createFileRegistry, fromBinary, fromJsonString, toBinary, toJson, type DescMessage, type DescService, type FileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { startService, type Running } from '../support/service.js';
import { DEFAULT_CONFIG_PATH } from '../../ext-authz/src/config/load.js';

const require = createRequire(import.meta.url);
const REFLECTION_PROTO_DIR = join(require.resolve('@grpc/reflection'), '..', '..', 'proto');
const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** One request on a ServerReflectionInfo stream of the given version. */
function reflect(port: number, version: 'v1' | 'v1alpha', request: Record<string, unknown>): Promise<ReflectionResponse> {
  const def = protoLoader.loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [REFLECTION_PROTO_DIR], keepCase: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { reflection: Record<string, { ServerReflection: grpc.ServiceClientConstructor }> } };
  const client = new pkg.grpc.reflection[version]!.ServerReflection(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, ReflectionResponse>;
  };
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo();
    call.on('data', (res) => {
      resolve(res);
      call.end();
      client.close();
    });
    call.on('error', reject);
    call.write({ host: '', ...request });
  });
}

/**
 * What grpcurl does after file_containing_symbol: link the files it was sent,
 * imports before importers; an import that was not sent is an error
 * (createFileRegistry on a FileDescriptorSet refuses unknown dependencies).
 */
function strictPool(files: FileDescriptorProto[]): FileRegistry {
  const byName = new Map<string, FileDescriptorProto>(files.map((f) => [f.name, f]));
  const ordered: FileDescriptorProto[] = [];
  const seen = new Set<string>();
  const visit = (f: FileDescriptorProto) => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const d of f.dependency) {
      const dep = byName.get(d);
      if (dep) visit(dep); // a missing one is left for the registry to refuse
    }
    ordered.push(f);
  };
  files.forEach(visit);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
}

async function poolFor(port: number, version: 'v1' | 'v1alpha', symbol: string): Promise<FileRegistry> {
  const res = await reflect(port, version, { file_containing_symbol: symbol });
  assert.equal(res.error_response, undefined, JSON.stringify(res.error_response));
  return strictPool(res.file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b)));
}

/** A unary call with messages encoded and decoded by the dynamic pool. */
function callRaw(port: number, path: string, input: DescMessage, output: DescMessage, body: Uint8Array, registry: FileRegistry): Promise<unknown> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => fromBinary(output, b),
      body,
      (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(toJson(output, res as never, { registry }));
      },
    );
    void input;
  });
}

describe('gRPC reflection (what grpcurl sees)', () => {
  let run: Running;
  before(async () => {
    run = await startService(readFileSync(DEFAULT_CONFIG_PATH, 'utf8'));
  });
  after(async () => run.stop());

  for (const version of ['v1', 'v1alpha'] as const) {
    it(`${version}: lists the Authorization, Health and reflection services`, async () => {
      const res = await reflect(run.svc.grpcPort, version, { list_services: '*' });
      const names = res.list_services_response!.service.map((s) => s.name).sort();
      assert.ok(names.includes('envoy.service.auth.v3.Authorization'), names.join(','));
      assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
    });

    it(`${version}: describes Authorization with every transitive import, loadable by a strict registry`, async () => {
      const pool = await poolFor(run.svc.grpcPort, version, 'envoy.service.auth.v3.Authorization');
      const svc = pool.getService('envoy.service.auth.v3.Authorization') as DescService;
      assert.ok(svc, 'service in the pool');
      assert.deepEqual(svc.methods.map((m) => m.name), ['Check']);
      // Deep types from other files resolved (address, status, timestamps...).
      for (const t of ['envoy.config.core.v3.Address', 'google.rpc.Status', 'envoy.type.v3.HttpStatus', 'google.protobuf.Timestamp']) {
        assert.ok(pool.getMessage(t), `${t} resolvable`);
      }
    });
  }

  it("calls Check through the pool with the README's grpcurl request", async () => {
    const m = /grpcurl -plaintext -d '([^']+)' \\\n\s+127\.0\.0\.1:9001 (\S+)\/Check/.exec(README);
    assert.ok(m, 'README has the grpcurl Check command');
    assert.equal(m[2], 'envoy.service.auth.v3.Authorization');
    const pool = await poolFor(run.svc.grpcPort, 'v1', m[2]);
    const method = (pool.getService(m[2]) as DescService).methods.find((x) => x.name === 'Check')!;
    const req = fromJsonString(method.input, m[1]!, { registry: pool });
    const res = (await callRaw(run.svc.grpcPort, `/${m[2]}/Check`, method.input, method.output, toBinary(method.input, req), pool)) as {
      status?: { code?: number };
      okResponse?: unknown;
    };
    assert.equal(res.status?.code ?? 0, 0, JSON.stringify(res));
    assert.ok(res.okResponse !== undefined, JSON.stringify(res));
  });

  it("calls grpc.health.v1.Health/Check through the pool (the README's command)", async () => {
    assert.match(README, /grpcurl -plaintext 127\.0\.0\.1:9001 grpc\.health\.v1\.Health\/Check/);
    const pool = await poolFor(run.svc.grpcPort, 'v1', 'grpc.health.v1.Health');
    const method = (pool.getService('grpc.health.v1.Health') as DescService).methods.find((x) => x.name === 'Check')!;
    const req = fromJsonString(method.input, '{}', { registry: pool });
    const res = await callRaw(run.svc.grpcPort, '/grpc.health.v1.Health/Check', method.input, method.output, toBinary(method.input, req), pool);
    assert.deepEqual(res, { status: 'SERVING' });
  });

  it('a file without its imports is refused by the strict registry (the check can fail)', async () => {
    const res = await reflect(run.svc.grpcPort, 'v1', { file_containing_symbol: 'envoy.service.auth.v3.Authorization' });
    const files = res.file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
    assert.ok(files[0]!.dependency.length > 0, 'the service file declares its imports');
    assert.doesNotThrow(() => strictPool(files));
    for (const dropped of files.slice(1).map((f) => f.name)) {
      assert.throws(() => strictPool(files.filter((f) => f.name !== dropped)), /Cannot find/, `without ${dropped}`);
    }
  });
});
