/**
 * `npm start`'s app flow: the embedded default config behind the local
 * gateway with with_request_body (as npm start runs it). The banner's own
 * commands (appDemoLines) run in bash: `npm run app-request` registers a demo
 * device through the registration listener, signs, and curl sends the same
 * request twice: 200 with a Passport carrying the device, then 401
 * signature_replayed. Also Envoy's body limits as the gateway applies them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadConfigFile, DEFAULT_CONFIG_PATH } from '../../ext-authz/src/config/load.js';
import { ensureWasmBuilt, REPO_ROOT, startStack, type Stack } from '../../local-gateway/src/stack.js';
import { APP_DEMO_BODY, appDemoLines } from '../../local-gateway/src/app-demo.js';
import type { EchoBody } from '../../local-gateway/src/echo-upstream.js';
import { makeCerts, type TestCerts } from '../e2e/support/harness.js';

const sh = promisify(execFile);

describe('app-signature: npm start app flow (embedded default, local gateway with request bodies)', function () {
  this.timeout(90_000);
  let certs: TestCerts;
  let stack: Stack;
  let tmp: string;

  before(async () => {
    ensureWasmBuilt();
    certs = await makeCerts();
    tmp = mkdtempSync(join(tmpdir(), 'appsig-'));
    // A generous ext_authz timeout: the first Checks run cold on a loaded machine (timings belong in the bench).
    stack = await startStack({ config: loadConfigFile(DEFAULT_CONFIG_PATH), certs, extAuthz: { timeoutMs: 5_000, withRequestBody: { ...APP_DEMO_BODY, maxRequestBytes: 64 } } });
  });
  after(async () => {
    await stack?.stop();
    if (certs) rmSync(certs.dir, { recursive: true, force: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** Runs a printed banner command in bash from the repo root, its header file in a temp folder; the HTTP statuses and bodies it printed. */
  async function runLine(line: string): Promise<string> {
    const cmd = line.trim().replaceAll('/tmp/passgate-app.h', join(tmp, 'app.h')).replaceAll('curl -si', 'curl -s -w "\\nSTATUS %{http_code}\\n"');
    return (await sh('bash', ['-c', cmd], { cwd: REPO_ROOT })).stdout;
  }

  it('the printed app commands: 200 with the device in the Passport, then 401 signature_replayed; a body is digest-checked', async () => {
    const lines = (await appDemoLines(stack.service.adminPort, stack.httpPort)).filter((l) => !l.trim().startsWith('#'));
    assert.equal(lines.length, 2, 'two commands printed');
    const out = await runLine(lines[0]!);
    const statuses = [...out.matchAll(/STATUS (\d+)/g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [200, 401], out);
    const echo = JSON.parse(out.slice(0, out.indexOf('\nSTATUS'))) as EchoBody;
    const claims = (echo.passport as { claims: { device: { platform: string; attestation: string } } }).claims;
    assert.equal(echo.passport?.verified, true);
    assert.deepEqual([claims.device.platform, claims.device.attestation], ['ios', 'basic']);
    assert.match(out, /signature_replayed/);
    const body = await runLine(lines[1]!);
    assert.match(body, /STATUS 200/, body);
  });

  it('a body longer than max_request_bytes is cut and marked by the gateway, and the stage refuses it (body_truncated)', async () => {
    const url = `http://localhost:${stack.httpPort}/app/hello`;
    const reg = (await appDemoLines(stack.service.adminPort, stack.httpPort)).join(' ').match(/--register (\S+)/)![1]!;
    const data = JSON.stringify({ note: 'x'.repeat(100) });
    const file = join(tmp, 'long.h');
    await sh('bash', ['-c', `npm run -s app-request -- ${url} --register ${reg} --method POST --data '${data}' > ${file}`], { cwd: REPO_ROOT });
    const out = (await sh('bash', ['-c', `curl -s -w "\\nSTATUS %{http_code}" -H @${file} --data '${data}' ${url}`])).stdout;
    assert.match(out, /STATUS 401/, out);
    assert.match(out, /body_truncated/, out);
  });
});
