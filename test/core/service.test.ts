import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { mkdtempSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { startService, httpCheck, headerMap, check, authzClient, type Running } from '../support/service.js';
import { testComposition } from '../support/test-stages.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import { AUTHORIZATION_SERVICE_NAME, CHECK_METHOD_PATH, loadAuthorizationService } from '../../ext-authz/src/proto/load.js';


const CONFIG = `
logging: { level: info, audit: true }
server: { defaultDeadlineMs: 300, deadlineMarginMs: 100 }
gateways:
  public:
    kind: public
    select: { hosts: [www.example.com] }
    routes:
      - name: health
        match: { path: { exact: /healthz } }
        stages: [allow]
      - name: needs-version
        match: { path: { prefix: /api } }
        stages: [{ type: require-headers, headers: [{ name: x-api-version, pattern: "v[0-9]+" }] }]
      - name: login
        match: { path: { prefix: /login } }
        stages: [{ type: deny, status: 401, reason: login_required }]
      - name: limited
        match: { path: { prefix: /limited } }
        stages: [{ type: deny, status: 429, reason: slow_down }]
      - name: sets
        match: { path: { prefix: /sets } }
        stages: [{ type: test-set-header, name: x-passport, value: signed }, allow]
      - name: slow-closed
        match: { path: { prefix: /slow-closed } }
        stages: [{ type: test-sleep, ms: 2000 }, allow]
      - name: slow-open
        match: { path: { prefix: /slow-open } }
        failureMode: open
        stages: [{ type: test-sleep, ms: 2000 }, allow]
      - name: throws
        match: { path: { prefix: /throws } }
        stages: [{ type: test-throw }]
      - name: throws-async-open
        match: { path: { prefix: /throws-open } }
        failureMode: open
        stages: [{ type: test-throw, async: true }, { type: test-set-header, name: x-passgate-user, value: u1 }]
      - name: fails-open
        match: { path: { prefix: /fails-open } }
        failureMode: open
        stages: [test-fail, allow]
      - name: fails-closed
        match: { path: { prefix: /fails-closed } }
        stages: [test-fail, allow]
      - name: slow-finish-closed
        match: { path: { prefix: /slow-finish-closed } }
        stages: [{ type: test-slow-finish, ms: 2000 }, allow]
      - name: slow-finish-open
        match: { path: { prefix: /slow-finish-open } }
        failureMode: open
        stages: [{ type: test-slow-finish, ms: 2000 }, allow]
      - name: a-bit-slow
        match: { path: { prefix: /a-bit-slow } }
        stages: [{ type: test-sleep, ms: 300 }, allow]
  secure:
    kind: secure
    select: { hosts: [secure.example.com] }
    challenge: 'Mutual realm="passgate"'
    routes:
      - name: all
        stages: [allow]
`;

function isOk(res: CheckResponse): boolean {
  return (res.status?.code ?? 0) === 0 && res.ok_response !== undefined;
}

// Every case runs on both gRPC transports (server.transport): the lean default and grpc-js, its fallback.
for (const transport of ['h2', 'grpc-js'] as const) {
  describe(`ext_authz service over gRPC (server.transport ${transport})`, function () {
    this.timeout(20_000);
    let run: Running;
    before(async () => {
      run = await startService(CONFIG.replace('server: { ', `server: { transport: ${transport}, `));
      assert.equal(run.svc.grpc.transport, transport);
    });
    after(async () => run?.stop());

    it('allows with OK, append false on every set header, and strips every internal header', async () => {
      const res = await run.check(httpCheck({ path: '/healthz', headers: { 'x-passport': 'forged', 'x-passgate-user': 'admin' } }));
      assert.ok(isOk(res));
      assert.equal(res.http_response, 'ok_response');
      const remove = res.ok_response?.headers_to_remove ?? [];
      for (const h of ['x-passport', 'x-passgate-degraded', 'x-passgate-user']) assert.ok(remove.includes(h), `${h} not removed: ${remove}`);
    });

    it('a header the gateway sets is overwritten (append false) and not also removed', async () => {
      const res = await run.check(httpCheck({ path: '/sets', headers: { 'x-passport': 'forged' } }));
      assert.ok(isOk(res));
      const set = res.ok_response?.headers ?? [];
      const passport = set.find((h) => h.header?.key === 'x-passport');
      assert.equal(passport?.header?.value, 'signed');
      assert.deepEqual(passport?.append, { value: false });
      assert.ok(!(res.ok_response?.headers_to_remove ?? []).includes('x-passport'));
      assert.deepEqual(headerMap(res.ok_response?.response_headers_to_add), { 'x-test-response': 'yes' });
    });

    it('removes XFCC on a non-mTLS gateway and keeps it on an mTLS one', async () => {
      const pub = await run.check(httpCheck({ path: '/healthz', headers: { 'x-forwarded-client-cert': 'Hash=abc' } }));
      assert.ok(pub.ok_response?.headers_to_remove?.includes('x-forwarded-client-cert'));
      const sec = await run.check(httpCheck({ host: 'secure.example.com', headers: { 'x-forwarded-client-cert': 'Hash=abc' } }));
      assert.ok(isOk(sec));
      assert.ok(!sec.ok_response?.headers_to_remove?.includes('x-forwarded-client-cert'));
    });

    it('denies with a JSON body, matching gRPC code and no internal detail', async () => {
      const res = await run.check(httpCheck({ path: '/api/users', headers: { 'x-request-id': 'req-42' } }));
      assert.equal(res.status?.code, 3); // INVALID_ARGUMENT for 400
      assert.equal(res.denied_response?.status?.code, 400);
      const body = JSON.parse(res.denied_response?.body ?? '{}');
      assert.deepEqual(body, { error: 'bad_request', reason: 'missing_header', trace_id: 'req-42' });
      const headers = headerMap(res.denied_response?.headers);
      assert.equal(headers['content-type'], 'application/json');
      for (const h of res.denied_response?.headers ?? []) assert.equal(h.append, undefined, 'denied headers never set append');
    });

    it('maps statuses to gRPC codes and adds WWW-Authenticate on 401', async () => {
      const login = await run.check(httpCheck({ path: '/login' }));
      assert.equal(login.status?.code, 16);
      assert.equal(login.denied_response?.status?.code, 401);
      assert.equal(headerMap(login.denied_response?.headers)['www-authenticate'], 'Bearer realm="passgate"');
      const limited = await run.check(httpCheck({ path: '/limited' }));
      assert.equal(limited.status?.code, 8);
      assert.equal(limited.denied_response?.status?.code, 429);
      const noRoute = await run.check(httpCheck({ path: '/nothing-here' }));
      assert.equal(noRoute.denied_response?.status?.code, 404);
      assert.equal(JSON.parse(noRoute.denied_response!.body!).reason, 'no_route');
    });

    it('takes the trace id from a valid traceparent', async () => {
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const res = await run.check(httpCheck({ path: '/login', headers: { traceparent } }));
      assert.equal(JSON.parse(res.denied_response!.body!).trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
    });

    it('an unknown gateway is a clear 403, not an error', async () => {
      const res = await run.check(httpCheck({ gateway: 'nope' }));
      assert.equal(res.denied_response?.status?.code, 403);
      assert.equal(JSON.parse(res.denied_response!.body!).reason, 'unknown_gateway');
      const noHost = await run.check(httpCheck({ host: 'elsewhere.test' }));
      assert.equal(JSON.parse(noHost.denied_response!.body!).reason, 'unknown_gateway');
    });

    it('an empty CheckRequest and a TCP-level check get a CheckResponse', async () => {
      const empty = await run.check({});
      assert.equal(empty.denied_response?.status?.code, 403);
      const tcp = await run.check({ attributes: { context_extensions: { gateway: 'secure' }, source: { principal: 'spiffe://x/y' } } });
      assert.ok(isOk(tcp));
    });

    it('1 MB of headers gets an answer', async () => {
      const headers: Record<string, string> = {};
      for (let i = 0; i < 1024; i++) headers[`x-h-${i}`] = 'v'.repeat(1000);
      const res = await run.check(httpCheck({ path: '/api/x', headers }));
      assert.equal(res.denied_response?.status?.code, 400);
    });

    it('non-UTF-8 bytes in strings get a decision, not a crash', async () => {
      // Hand-encode CheckRequest{attributes{request{http{headers{"x-bad": 0xff 0xfe}, path: "/healthz"}}, context_extensions{gateway: public}}}
      const bytes = (b: number[]) => Buffer.from(b);
      const lenField = (tag: number, payload: Buffer) => Buffer.concat([bytes([tag]), varint(payload.length), payload]);
      function varint(n: number): Buffer {
        const out: number[] = [];
        while (n > 127) {
          out.push((n & 127) | 128);
          n >>>= 7;
        }
        out.push(n);
        return Buffer.from(out);
      }
      const headerEntry = lenField(0x1a, Buffer.concat([lenField(0x0a, Buffer.from('x-bad')), lenField(0x12, bytes([0xff, 0xfe, 0x41]))]));
      const path = lenField(0x22, Buffer.from('/healthz'));
      const http = lenField(0x12, Buffer.concat([headerEntry, path]));
      const request = lenField(0x22, http);
      const ext = lenField(0x52, Buffer.concat([lenField(0x0a, Buffer.from('gateway')), lenField(0x12, Buffer.from('public'))]));
      const checkRequest = lenField(0x0a, Buffer.concat([request, ext]));
      const client = new grpc.Client(`127.0.0.1:${run.svc.grpcPort}`, grpc.credentials.createInsecure());
      const raw: Buffer = await new Promise((resolve, reject) =>
        client.makeUnaryRequest(
          CHECK_METHOD_PATH,
          (b: Buffer) => b,
          (b: Buffer) => b,
          checkRequest,
          (err, value) => (err ? reject(err) : resolve(value!)),
        ),
      );
      client.close();
      assert.ok(raw.length > 0);
      const res = loadAuthorizationService().service['Check']!.responseDeserialize(raw) as CheckResponse;
      assert.equal(res.status?.code ?? 0, 0);
      assert.ok(res.ok_response);
    });

    it('a stage that overruns the deadline fails closed with 503 before Envoy gives up', async () => {
      const started = Date.now();
      // A generous deadline keeps this honest on a loaded machine; the stage needs 2 s.
      const res = await run.check(httpCheck({ path: '/slow-closed' }), 800);
      assert.equal(res.denied_response?.status?.code, 503);
      assert.equal(JSON.parse(res.denied_response!.body!).reason, 'deadline_exceeded');
      assert.ok(Date.now() - started < 1_900, 'answered before the stage finished');
    });

    it('uses the default deadline when the caller sends none', async () => {
      const res: CheckResponse = await new Promise((resolve, reject) =>
        run.client.Check(httpCheck({ path: '/a-bit-slow' }), new grpc.Metadata(), {}, (err, r) => (err ? reject(err) : resolve(r!))),
      );
      // default 300 ms less the 100 ms margin is shorter than the 300 ms stage
      assert.equal(JSON.parse(res.denied_response!.body!).reason, 'deadline_exceeded');
    });

    it('a stage that overruns on a fail-open route allows, marked degraded', async () => {
      const res = await run.check(httpCheck({ path: '/slow-open' }), 800);
      assert.ok(isOk(res));
      assert.equal(headerMap(res.ok_response?.headers)['x-passgate-degraded'], 'true');
    });

    it('a finish hook that overruns never turns into an allow on a closed route', async () => {
      const closed = await run.check(httpCheck({ path: '/slow-finish-closed' }), 800);
      assert.equal(closed.denied_response?.status?.code, 503);
      assert.equal(JSON.parse(closed.denied_response!.body!).reason, 'deadline_exceeded');
      const open = await run.check(httpCheck({ path: '/slow-finish-open' }), 800);
      assert.ok(isOk(open));
      assert.equal(headerMap(open.ok_response?.headers)['x-passgate-degraded'], 'true');
    });

    it('a throwing stage is a 503 deny on a closed route, never a gRPC error', async () => {
      const res = await run.check(httpCheck({ path: '/throws' }));
      assert.equal(res.denied_response?.status?.code, 503);
      assert.equal(res.status?.code, 14);
      assert.equal(JSON.parse(res.denied_response!.body!).reason, 'stage_error');
      assert.doesNotMatch(res.denied_response!.body!, /boom/, 'no internal detail leaks');
    });

    it('a rejecting stage on an open route continues the chain, degraded', async () => {
      const res = await run.check(httpCheck({ path: '/throws-open', headers: { 'x-passgate-user': 'forged' } }));
      assert.ok(isOk(res));
      const set = headerMap(res.ok_response?.headers);
      assert.equal(set['x-passgate-degraded'], 'true');
      assert.equal(set['x-passgate-user'], 'u1');
    });

    it('a stage that cannot decide follows the failure mode', async () => {
      const open = await run.check(httpCheck({ path: '/fails-open' }));
      assert.ok(isOk(open));
      assert.equal(headerMap(open.ok_response?.headers)['x-passgate-degraded'], 'true');
      const closed = await run.check(httpCheck({ path: '/fails-closed' }));
      assert.equal(closed.denied_response?.status?.code, 503);
      assert.equal(JSON.parse(closed.denied_response!.body!).reason, 'dependency_unavailable');
    });

    it('writes one audit line per decision with trace id, gateway, route, decision, reason and latency', async () => {
      const before = run.logs.lines.length;
      await run.check(httpCheck({ path: '/login', headers: { 'x-request-id': 'audit-1' } }));
      const audit = run.logs.lines.slice(before).filter((l) => l['log'] === 'audit');
      assert.equal(audit.length, 1);
      const line = audit[0]!;
      assert.equal(line['trace_id'], 'audit-1');
      assert.equal(line['gateway'], 'public');
      assert.equal(line['route'], 'login');
      assert.equal(line['decision'], 'deny');
      assert.equal(line['reason'], 'login_required');
      assert.equal(typeof line['latency_ms'], 'number');
      assert.ok(typeof line['time'] === 'string' || typeof line['time'] === 'number');
    });

    it('serves metrics, healthz and readyz on the admin port', async () => {
      const base = `http://127.0.0.1:${run.svc.adminPort}`;
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /passgate_checks_total\{gateway="public",route="login",decision="deny",reason="login_required"\} \d+/);
      assert.match(metrics, /passgate_check_duration_seconds_bucket\{le="0.001",gateway="public"\}/);
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      assert.equal((await fetch(`${base}/nope`)).status, 404);
    });

    it('reports SERVING on grpc.health.v1', async () => {
      const require = createRequire(import.meta.url);
      const protoPath: string = require('grpc-health-check').protoPath;
      const def = protoLoader.loadSync(protoPath, { keepCase: true, enums: String });
      const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
      const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${run.svc.grpcPort}`, grpc.credentials.createInsecure()) as unknown as {
        Check(req: { service: string }, cb: (e: Error | null, r: { status: string }) => void): void;
        close(): void;
      };
      for (const service of ['', AUTHORIZATION_SERVICE_NAME]) {
        const r = await new Promise<{ status: string }>((resolve, reject) => client.Check({ service }, (e, res) => (e ? reject(e) : resolve(res))));
        assert.equal(r.status, 'SERVING');
      }
      client.close();
    });

    it('answers server reflection, so grpcurl can list and describe the service', async () => {
      const require = createRequire(import.meta.url);
      const reflectionDir = join(require.resolve('@grpc/reflection'), '..', '..', 'proto');
      const def = protoLoader.loadSync('grpc/reflection/v1alpha/reflection.proto', { includeDirs: [reflectionDir], keepCase: true });
      const pkg = grpc.loadPackageDefinition(def) as unknown as { grpc: { reflection: { v1alpha: { ServerReflection: grpc.ServiceClientConstructor } } } };
      const client = new pkg.grpc.reflection.v1alpha.ServerReflection(`127.0.0.1:${run.svc.grpcPort}`, grpc.credentials.createInsecure()) as unknown as {
        ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, Reflected>;
        close(): void;
      };
      type Reflected = { list_services_response?: { service: Array<{ name: string }> }; file_descriptor_response?: { file_descriptor_proto: Buffer[] } };
      const ask = (request: object) => {
        const call = client.ServerReflectionInfo();
        return new Promise<Reflected>((resolve, reject) => {
          call.on('data', (d: Reflected) => {
            resolve(d);
            call.end();
          });
          call.on('error', reject);
          call.write(request);
        });
      };
      const answer = await ask({ list_services: '*' });
      const names = answer.list_services_response?.service.map((s) => s.name) ?? [];
      assert.ok(names.includes('envoy.service.auth.v3.Authorization'), names.join(','));
      // `grpcurl describe` needs the file descriptors behind a symbol.
      const described = await ask({ file_containing_symbol: 'envoy.service.auth.v3.Authorization' });
      assert.ok((described.file_descriptor_response?.file_descriptor_proto.length ?? 0) > 0);
      client.close();
    });
  });
}

describe('config reload', function () {
  this.timeout(20_000);
  const v1 = CONFIG;
  const v2 = CONFIG.replace('reason: login_required', 'reason: login_moved');

  it('reloads on request (SIGHUP) and on file change; a bad new file keeps the old config serving', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'passgate-reload-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, v1);
    const run = await startService(v1, { configPath: file, watchConfig: true });
    try {
      const reason = async () => JSON.parse((await run.check(httpCheck({ path: '/login' }))).denied_response!.body!).reason;
      assert.equal(await reason(), 'login_required');

      writeFileSync(file, v2);
      assert.equal(await run.svc.reload(), true);
      assert.equal(await reason(), 'login_moved');

      writeFileSync(file, 'gateways:\n  public: { kind: nope }\n');
      assert.equal(await run.svc.reload(), false);
      assert.equal(await reason(), 'login_moved', 'old config keeps serving');
      const rejected = run.logs.lines.find((l) => l['msg'] === 'new config rejected; the previous config keeps serving');
      assert.ok(rejected, 'rejection logged');
      assert.match(JSON.stringify(rejected['problems']), /gateways\.public\.kind/);

      // File change without a signal: an atomic rename, as editors and Kubernetes do.
      const tmp = join(dir, 'config.yaml.tmp');
      writeFileSync(tmp, v1);
      renameSync(tmp, file);
      const deadline = Date.now() + 5_000;
      while (Date.now() < deadline && (await reason()) !== 'login_required') await new Promise((r) => setTimeout(r, 50));
      assert.equal(await reason(), 'login_required');
      const metrics = await (await fetch(`http://127.0.0.1:${run.svc.adminPort}/metrics`)).text();
      assert.match(metrics, /passgate_config_reloads_total\{result="rejected"\} 1/);
    } finally {
      await run.stop();
    }
  });
});

describe('audit logging follows the serving config', function () {
  this.timeout(20_000);
  it('turning logging.audit off by reload stops the audit lines', async () => {
    const run = await startService(CONFIG);
    try {
      const audits = () => run.logs.lines.filter((l) => l['log'] === 'audit').length;
      await run.check(httpCheck({ path: '/login' }));
      assert.equal(audits(), 1);
      await run.svc.applyConfig(parseConfigText(CONFIG.replace('audit: true', 'audit: false'), 'reload.yaml', testComposition()));
      await run.check(httpCheck({ path: '/login' }));
      assert.equal(audits(), 1, 'no audit line after audit was turned off');
    } finally {
      await run.stop();
    }
  });
});

describe('graceful shutdown', function () {
  this.timeout(20_000);
  it('reports NOT_SERVING, finishes in-flight Checks, refuses new ones and stops within the grace period', async () => {
    const run = await startService(CONFIG.replace('ms: 300', 'ms: 400'));
    const inflight = run.check(httpCheck({ path: '/a-bit-slow' }), 5_000);
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const stopping = run.svc.stop(3_000);
    assert.equal(run.svc.isDraining, true);
    const ready = await fetch(`http://127.0.0.1:${run.svc.adminPort}/readyz`).catch(() => undefined);
    if (ready) assert.equal(ready.status, 503);
    const res = await inflight;
    assert.ok(isOk(res), 'the in-flight Check finished with its real answer');
    await stopping;
    assert.ok(Date.now() - started < 3_000);
    const late = authzClient(run.svc.grpcPort);
    await assert.rejects(check(late, httpCheck({ path: '/healthz' }), 500));
    late.close();
    run.client.close();
  });
});
