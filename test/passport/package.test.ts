/**
 * The verifier as services install it: `npm pack` of packages/passport-verifier
 * (built from ext-authz/src/passport/consumer), installed offline into a fresh
 * project, verifying a Passport that a running Passgate issued, in a process
 * of its own that sees nothing of this repository.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { authzClient, check as grpcCheck, type AuthzClient } from '../support/service.js';
import { configWith, passportSection, silent, TEST_IDENTITY } from './helpers.js';
import { testCapability } from '../support/test-stages.js';
import { REPO_ROOT } from '../../local-gateway/src/stack.js';

const PKG = join(REPO_ROOT, 'packages', 'passport-verifier');

function run(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} in ${cwd}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Async: the service answering the JWKS fetch runs in this very process. */
async function verifyIn(app: string, token: string, jwksUrl: string): Promise<unknown> {
  const { stdout } = await promisify(execFile)(process.execPath, ['verify.mjs', token, jwksUrl], { cwd: app, encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(stdout);
}

const APP = `
import { createPassportVerifier } from '@passgate/passport-verifier';
const [token, jwksUrl] = process.argv.slice(2);
const v = createPassportVerifier({ jwksUrl, issuer: 'https://passgate.test', audience: 'orders' });
const r = await v.verify(token);
console.log(JSON.stringify(r.ok ? { ok: true, user: r.passport.user.id, alg: r.passport.alg } : { ok: false, code: r.error.code }));
`;

describe('@passgate/passport-verifier: npm pack, install, verify', function () {
  this.timeout(240_000);
  let dir: string;
  let svc: PassgateService;
  let client: AuthzClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'passgate-pkg-'));
    svc = await PassgateService.start({
      config: configWith(passportSection({ keys: { active: 'k1', entries: [{ id: 'k1', generate: true }] } }), [TEST_IDENTITY, 'passport']),
      grpcPort: 0,
      adminPort: 0,
      processMetrics: false,
      logger: silent,
      capabilities: [testCapability],
    });
    client = authzClient(svc.grpcPort);
  });
  after(async () => {
    client?.close();
    await svc?.stop(0);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('packs built JS, d.ts, README and LICENSE only; installs offline; verifies a live Passport', async () => {
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', dir], PKG)) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = packed[0]!.files.map((f) => f.path).sort();
    assert.deepEqual(files, ['LICENSE', 'README.md', 'dist/consumer/index.d.ts', 'dist/consumer/index.js', 'dist/model.d.ts', 'dist/model.js', 'package.json']);
    const tarball = join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!);

    const app = join(dir, 'app');
    run('mkdir', ['-p', app], dir);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer-app', private: true, type: 'module' }));
    writeFileSync(join(app, 'verify.mjs'), APP);
    // No runtime dependencies, so an offline install must work anywhere.
    run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], app);

    const res = await grpcCheck(
      client,
      { attributes: { context_extensions: { gateway: 'public' }, request: { http: { method: 'GET', path: '/app/orders', host: 'app.test', headers: { 'x-test-subject': 'alice' } } } } },
      10_000,
    );
    const token = res.ok_response?.headers?.find((h) => h.header?.key === 'x-passport')?.header?.value;
    assert.ok(token, JSON.stringify(res));
    const jwksUrl = `http://127.0.0.1:${svc.adminPort}/.well-known/jwks.json`;
    assert.deepEqual(await verifyIn(app, token, jwksUrl), { ok: true, user: 'u-alice', alg: 'EdDSA' });
    const [h, p, s] = token.split('.');
    const tampered = `${h}.${p}.${s!.startsWith('A') ? 'B' : 'A'}${s!.slice(1)}`;
    assert.deepEqual(await verifyIn(app, tampered, jwksUrl), { ok: false, code: 'bad_signature' });
  });
});
