/**
 * Issue 12 item 3: a `prefix: /admin` deny route cannot be walked around by
 * spelling the path differently; paths whose meaning depends on the backend
 * are refused with 400 and a reason. Driven through the real gRPC service.
 */
import assert from 'node:assert/strict';
import { normalizePath } from '../../ext-authz/src/pipeline/path-policy.js';
import { httpCheck, startService, type Running } from '../support/service.js';

const YAML = `
gateways:
  public:
    kind: public
    select: { ports: [8443] }
    routes:
      - name: admin
        match: { path: { prefix: /admin } }
        stages: [{ type: deny, status: 403, reason: admin_forbidden }]
      - name: private-ci
        match: { path: { prefix: /Private, caseInsensitive: true } }
        stages: [{ type: deny, status: 403, reason: private_forbidden }]
    defaultRoute: { stages: [allow] }
`;

function outcome(res: Awaited<ReturnType<Running['check']>>): string {
  if (res.ok_response !== undefined && (res.status?.code ?? 0) === 0) return 'allow';
  return `${res.denied_response?.status?.code}:${JSON.parse(res.denied_response?.body ?? '{}').reason}`;
}

describe('path policy (issue 12 item 3)', () => {
  let svc: Running;
  before(async () => {
    svc = await startService(YAML);
  });
  after(async () => svc.stop());
  const ask = async (path: string) => outcome(await svc.check(httpCheck({ path })));

  it('normalized spellings of /admin hit the deny route', async () => {
    for (const p of [
      '/admin', '/admin/', '/admin/x', '//admin', '///admin/x', '/./admin', '/x/../admin', '/a/b/../../admin/x', '/../admin',
      '/%61dmin', '/%61%64%6D%69%6E/users', '/adm%69n', '/admin/./x', '/admin?x=1', '/x/%2E%2E/admin', '/x/%2e./admin', '/admin/.',
    ]) {
      assert.equal(await ask(p), '403:admin_forbidden', p);
    }
  });

  it('refuses paths whose meaning depends on the backend, with a reason', async () => {
    const cases: Array<[string, string]> = [
      ['/x%2Fadmin', 'path_encoded_separator'],
      ['/%2fadmin', 'path_encoded_separator'],
      ['/x%5Cadmin', 'path_encoded_separator'],
      ['/x\\..\\admin', 'path_backslash'],
      ['/\\admin', 'path_backslash'],
      ['/admin%00', 'path_control_character'],
      ['/admin\u0000', 'path_control_character'],
      ['/ad%zzmin', 'path_invalid_encoding'],
      ['/admin%', 'path_invalid_encoding'],
      ['/admin%2', 'path_invalid_encoding'],
      ['/admin;jsessionid=1', 'path_params'],
      ['/admin;/x', 'path_params'],
      ['/x;/../admin', 'path_params'],
      ['/admin%3Bx', 'path_params'],
      ['/admin.', 'path_trailing_dot_or_space'],
      ['/admin./x', 'path_trailing_dot_or_space'],
      ['/admin%20', 'path_trailing_dot_or_space'],
      ['/admin%2E', 'path_trailing_dot_or_space'],
      ['/admin ', 'path_invalid_character'],
      ['/admin\t', 'path_control_character'],
      ['/%2561dmin', 'path_double_encoding'],
      ['/%C0%AE%C0%AE/admin', 'path_invalid_encoding'],
      ['/admin#x', 'path_fragment'],
      ['admin', 'path_not_absolute'],
      ['/ädmin', 'path_invalid_character'],
    ];
    for (const [p, reason] of cases) assert.equal(await ask(p), `400:${reason}`, JSON.stringify(p));
  });

  it('case variants: exact by default, folded when the route opts in', async () => {
    assert.equal(await ask('/ADMIN'), 'allow', 'case-sensitive by default (backends on case-sensitive paths)');
    assert.equal(await ask('/Admin/x'), 'allow');
    assert.equal(await ask('/private/x'), '403:private_forbidden');
    assert.equal(await ask('/PRIVATE'), '403:private_forbidden');
    assert.equal(await ask('/%50rivate'), '403:private_forbidden');
  });

  it('leaves ordinary paths alone and keeps the query off the path', async () => {
    assert.equal(await ask('/'), 'allow');
    assert.equal(await ask('/administrator'), 'allow');
    assert.equal(await ask('/api/v1/items?next=/admin'), 'allow');
    assert.equal(await ask('/files/%C3%A9t%C3%A9.txt'), 'allow');
    assert.deepEqual(normalizePath('/a/%7euser/%c3%a9'), { ok: true, path: '/a/~user/%C3%A9' });
    assert.deepEqual(normalizePath('/a//b/./c/../d/'), { ok: true, path: '/a/b/d/' });
    assert.deepEqual(normalizePath('/..'), { ok: true, path: '/' });
    assert.deepEqual(normalizePath(''), { ok: true, path: '' });
  });

  it('percent-encoded bytes must be well-formed UTF-8 (RFC 3629), every boundary of the table', () => {
    const ok = ['%C2%80', '%DF%BF', '%E0%A0%80', '%E0%BF%BF', '%E1%80%80', '%EC%BF%BF', '%ED%80%80', '%ED%9F%BF', '%EE%80%80', '%EF%BF%BF', '%F0%90%80%80', '%F1%80%80%80', '%F4%8F%BF%BF', '%C3%A9', '%F0%9F%98%80'];
    for (const seq of ok) assert.equal(normalizePath(`/a/${seq}/b`).ok, true, seq);
    const bad = [
      '%C0%AE', '%C1%BF', '%E0%80%AE', '%E0%9F%BF', '%F0%80%80%AE', '%F0%8F%BF%BF', // overlong
      '%ED%A0%80', '%ED%BF%BF', // surrogates
      '%F4%90%80%80', '%F5%80%80%80', '%FF', '%80', '%BF', // past U+10FFFF, not a lead byte
      '%C3', '%E2%82', '%F0%9F%98', '%C3a', '%C3%41', '%E2%82/x', // cut short, or a continuation that is not one
    ];
    for (const seq of bad) {
      const r = normalizePath(`/a/${seq}`);
      assert.deepEqual(r.ok ? 'ok' : r.reason, 'path_invalid_encoding', seq);
    }
  });

  it('never throws on arbitrary input', () => {
    for (let i = 0; i < 20000; i++) {
      let s = '/';
      const n = (i * 7919) % 24;
      for (let j = 0; j < n; j++) s += String.fromCharCode(((i + 1) * (j + 13) * 2654435761) % 256 >>> 0);
      const r = normalizePath(s);
      if (r.ok) assert.equal(normalizePath(r.path).ok, true, `normal form is stable: ${JSON.stringify(s)}`);
    }
  });
});
