/** `passgate fds ...` against a real service's admin API (in process, and once through the real entry point). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { runFdsCli } from '../../ext-authz/src/cli/fds.js';
import type { PassgateService } from '../../ext-authz/src/server/service.js';
import { TOKEN, cleanup, config, redisFds, startService, testPrefix } from './helpers.js';

describe('passgate fds CLI', function () {
  let prefix: string;
  let svc: PassgateService;
  let url: string;

  before(async () => {
    prefix = testPrefix();
    svc = await startService(config(redisFds(prefix), [{ name: 'api', prefix: '/', stages: ['fds', 'allow'] }]));
    url = `http://127.0.0.1:${svc.adminPort}`;
  });
  after(async () => {
    await svc.stop(100);
    await cleanup(prefix);
  });

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runFdsCli(args, { env: { PASSGATE_ADMIN_URL: url, PASSGATE_FDS_ADMIN_TOKEN: TOKEN }, out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  it('blocks, lists, inspects and unblocks', async () => {
    let r = await cli('block', 'ip', '2001:db8:9::/48', '--ttl', '1h', '--reason', 'scanner', '--by', 'oncall');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /blocked: ip\s+2001:db8:9::\/48 .* by admin:oncall\s+reason: scanner/);
    r = await cli('block', 'user', 'mallory', '--ttl=none', '--reason', 'fraud');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /expires never/);
    r = await cli('list');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /mallory/);
    assert.match(r.out, /2001:db8:9::\/48/);
    assert.match(r.out, /2 block\(s\)/);
    r = await cli('list', '--kind', 'user', '--json');
    assert.deepEqual((JSON.parse(r.out) as Array<{ subject: string }>).map((b) => b.subject), ['mallory']);
    r = await cli('inspect', 'user', 'mallory');
    assert.equal(r.code, 0);
    assert.match(r.out, /blocked: user\s+mallory/);
    r = await cli('inspect', 'ip', '2001:db8:9::77');
    assert.match(r.out, /not blocked\ncovered by range: ip\s+2001:db8:9::\/48/);
    r = await cli('unblock', 'user', 'mallory');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /unblocked user mallory/);
    r = await cli('unblock', 'user', 'mallory');
    assert.equal(r.code, 1);
    assert.match(r.err, /404 user mallory is not blocked/);
  });

  it('rejects bad input with clear messages and exit code 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['block', 'ip', '1.2.3.999', '--ttl', '1h', '--reason', 'x'], /ip subject: "1\.2\.3\.999" is not an IPv4 or IPv6 address/],
      [['block', 'ip', '10.0.0.0/33', '--ttl', '1h', '--reason', 'x'], /not a valid CIDR range/],
      [['block', 'planet', 'mars', '--ttl', '1h', '--reason', 'x'], /unknown subject kind "planet"; use one of user, device, ip, client, cert/],
      [['block', 'user', 'bob', '--ttl', '400d', '--reason', 'x'], /--ttl 400d is out of range; must be between 1s and 365d/],
      [['block', 'user', 'bob', '--ttl', 'soon', '--reason', 'x'], /--ttl "soon" is not a duration/],
      [['block', 'user', 'bob', '--reason', 'x'], /block needs --ttl/],
      [['block', 'user', 'bob', '--ttl', '1h'], /block needs --reason/],
      [['block', 'user'], /block needs <kind> <subject>/],
      [['frobnicate'], /unknown command "frobnicate"/],
      [['list', '--colour', 'red'], /unknown option --colour/],
      [['list', '--count', '0'], /--count must be an integer from 1 to 1000/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')} → ${r.err}`);
      assert.match(r.err, message);
    }
    const noToken = await runFdsCli(['list'], { env: { PASSGATE_ADMIN_URL: url }, out: () => undefined, err: (l) => assert.match(l, /no admin token/) });
    assert.equal(noToken, 2);
  });

  it('reports server-side rejections and unreachable servers with exit code 1', async () => {
    const long = await cli('block', 'user', 'x', '--ttl', '1h', '--reason', 'r'.repeat(300));
    assert.equal(long.code, 1);
    assert.match(long.err, /400 reason must be text of at most 200 characters/);
    const bad = await runFdsCli(['list', '--token', 'wrong-token-wrong-token'], { env: { PASSGATE_ADMIN_URL: url }, out: () => undefined, err: (l) => assert.match(l, /401 send Authorization/) });
    assert.equal(bad, 1);
    const errs: string[] = [];
    const down = await runFdsCli(['list', '--url', 'http://127.0.0.1:1', '--token', TOKEN], { env: {}, out: () => undefined, err: (l) => errs.push(l) });
    assert.equal(down, 1);
    assert.match(errs.join(''), /cannot reach the admin API at http:\/\/127\.0\.0\.1:1/);
  });

  it('runs through the real entry point (passgate fds list)', async () => {
    // Asynchronous on purpose: the admin server answering lives in this process's event loop.
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', 'ext-authz/src/cli/main.ts', ...args], { encoding: 'utf8', timeout: 15_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    const r = await run(['fds', 'list', '--url', url, '--token', TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /block\(s\)/);
    const bad = await run(['nope']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown command "nope"/);
  });
});
