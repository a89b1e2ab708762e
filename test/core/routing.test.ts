import assert from 'node:assert/strict';
import { pino } from 'pino';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { assemble } from '../../ext-authz/src/server/assemble.js';
import { toRequestView, hostWithoutPort } from '../../ext-authz/src/pipeline/request-view.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import { httpCheck } from '../support/service.js';

const YAML = `
gateways:
  public:
    kind: public
    select: { hosts: [www.example.com, "*.web.example.com"], ports: [8080] }
    routes:
      - name: exact-health
        match: { path: { exact: /healthz } }
        stages: [allow]
      - name: api-get
        match: { path: { prefix: /api }, methods: [GET, HEAD] }
        stages: [allow]
      - name: api-write
        match: { path: { prefix: /api/ }, methods: [POST] }
        stages: [allow]
      - name: versioned
        match: { path: { regex: "^/v[0-9]+/items$" } }
        stages: [allow]
      - name: beta-header
        match: { headers: [{ name: x-beta, exact: "1" }] }
        stages: [allow]
      - name: no-cookie
        match: { path: { prefix: /static }, headers: [{ name: cookie, present: false }] }
        stages: [allow]
      - name: bearer
        match: { headers: [{ name: authorization, prefix: "Bearer " }] }
        stages: [allow]
      - name: hosted
        match: { hosts: [special.example.com] }
        stages: [allow]
  app:
    kind: app
    select: { hosts: [app.example.com], ports: [9443] }
    routes:
      - name: all
        stages: [allow]
  internal:
    kind: internal
    routes:
      - name: all
        stages: [allow]
  partner:
    kind: app
    select: { hosts: [partner.example.com] }
    routes:
      - name: all
        stages: [allow]
defaultGateway: public
`;

const { table } = await assemble(parseConfigText(YAML, 't'), {
  logger: pino({ level: 'silent' }),
  metrics: new Metrics(false),
});

function route(opts: Parameters<typeof httpCheck>[0]): string {
  const view = toRequestView(httpCheck(opts));
  const gw = table.selectGateway(view);
  assert.ok(gw, 'no gateway selected');
  return `${gw.name}/${table.selectRoute(gw, view).name}`;
}

describe('request view', () => {
  it('splits path and query, strips the port from the host, lowercases header names', () => {
    const req = httpCheck({ path: '/a/b?x=1&y=2', host: 'WWW.Example.com:8443', headers: { 'X-Mixed': 'v' } });
    const view = toRequestView(req);
    assert.equal(view.path, '/a/b');
    assert.equal(view.query, 'x=1&y=2');
    assert.equal(view.host, 'www.example.com');
    assert.equal(view.headers['x-mixed'], 'v');
    assert.equal(view.source.address, '203.0.113.7');
    assert.equal(view.destination.port, 8443);
    assert.equal(view.isHttp, true);
  });
  it('keeps IPv6 hosts intact and strips their port', () => {
    assert.equal(hostWithoutPort('[2001:db8::1]:443'), '[2001:db8::1]');
    assert.equal(hostWithoutPort('[2001:db8::1]'), '[2001:db8::1]');
    assert.equal(hostWithoutPort('2001:db8::1'), '2001:db8::1');
    assert.equal(hostWithoutPort('example.com:80'), 'example.com');
  });
  it('joins two spellings of one header as Envoy joins repeats', () => {
    const view = toRequestView({ attributes: { request: { http: { headers: { 'X-A': '1', 'x-a': '2' } } } } });
    assert.equal(view.headers['x-a']?.split(',').sort().join(','), '1,2');
  });
  it('reads header_map (encode_raw_headers) when headers is empty', () => {
    const view = toRequestView({
      attributes: {
        request: {
          http: {
            path: '/x',
            header_map: {
              headers: [
                { key: 'X-Raw', raw_value: Buffer.from('one') },
                { key: 'x-raw', raw_value: Buffer.from('two') },
                { key: ':authority', raw_value: Buffer.from('Raw.Example.com') },
              ],
            },
          },
        },
      },
    });
    assert.equal(view.headers['x-raw'], 'one,two');
    assert.equal(view.host, 'raw.example.com');
  });
  it('handles a TCP-level check with no request.http and an empty request', () => {
    const tcp = toRequestView({ attributes: { source: { address: { socket_address: { address: '10.1.1.1', port_value: 1 } } } } });
    assert.equal(tcp.isHttp, false);
    assert.equal(tcp.path, '');
    assert.equal(tcp.source.address, '10.1.1.1');
    for (const empty of [{}, undefined, null, { attributes: {} }]) {
      const v = toRequestView(empty as never);
      assert.equal(v.isHttp, false);
      assert.deepEqual(Object.keys(v.headers), []);
      assert.equal(v.headers['constructor'], undefined);
    }
  });
  it('maps carry no prototype: a name the request does not carry (constructor, toString, __proto__) is never found', () => {
    const view = toRequestView({
      attributes: {
        source: { labels: { app: 'web' } },
        context_extensions: { gateway: 'public' },
        request: { http: { headers: { 'x-a': '1' } } },
      },
    });
    for (const map of [view.headers, view.contextExtensions, view.source.labels, view.destination.labels]) {
      for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) assert.equal(map[name], undefined, name);
    }
    assert.equal(view.headers['x-a'], '1');
    assert.equal(view.source.labels['app'], 'web');
  });
});

describe('gateway selection', () => {
  it('prefers context_extensions.gateway over host and port', () => {
    assert.equal(route({ gateway: 'app', host: 'www.example.com', destinationPort: 8080 }), 'app/all');
  });
  it('an explicitly named unknown gateway selects nothing (no silent fallback)', () => {
    const view = toRequestView(httpCheck({ gateway: 'nope' }));
    assert.equal(table.selectGateway(view), undefined);
  });
  it('then the destination port, whatever the Host says (a client cannot pick the profile by Host)', () => {
    assert.equal(route({ host: 'app.example.com', destinationPort: 8080 }), 'public/default');
    assert.equal(route({ host: 'www.example.com', destinationPort: 9443 }), 'app/all');
    assert.equal(route({ host: 'partner.example.com', destinationPort: 9443 }), 'app/all');
  });
  it('on a port no profile binds, the host (exact or wildcard) selects only among profiles that bind no port', () => {
    assert.equal(route({ host: 'partner.example.com', destinationPort: 1 }), 'partner/all');
    // app and public bind ports: naming their hosts on another port does not reach them.
    assert.equal(route({ host: 'app.example.com', destinationPort: 1, path: '/healthz' }), 'public/exact-health');
    assert.equal(route({ host: 'shop.web.example.com', destinationPort: 1, path: '/healthz' }), 'public/exact-health');
  });
  it('SNI, when the Check carries it, selects before Host', () => {
    const req = httpCheck({ host: 'www.example.com', destinationPort: 1 });
    (req.attributes as Record<string, unknown>)['tls_session'] = { sni: 'partner.example.com' };
    const view = toRequestView(req);
    assert.equal(table.selectGateway(view)?.name, 'partner');
    // ...but never over a bound port.
    const bound = httpCheck({ host: 'www.example.com', destinationPort: 9443 });
    (bound.attributes as Record<string, unknown>)['tls_session'] = { sni: 'partner.example.com' };
    assert.equal(table.selectGateway(toRequestView(bound))?.name, 'app');
  });
  it('a wildcard does not match the bare domain', () => {
    assert.equal(route({ host: 'web.example.com', destinationPort: 1, path: '/' }), 'public/default');
  });
  it('then the default gateway', () => {
    assert.equal(route({ host: 'unknown.test', destinationPort: 9443 }), 'app/all');
    assert.equal(route({ host: 'unknown.test', destinationPort: 1, path: '/healthz' }), 'public/exact-health');
  });
});

describe('route matching', () => {
  const at = (opts: Parameters<typeof httpCheck>[0]) => route({ host: 'www.example.com', ...opts });
  it('exact path', () => {
    assert.equal(at({ path: '/healthz' }), 'public/exact-health');
    assert.equal(at({ path: '/healthz/' }), 'public/default');
  });
  it('prefix respects segment boundaries', () => {
    assert.equal(at({ path: '/api' }), 'public/api-get');
    assert.equal(at({ path: '/api/users?id=1' }), 'public/api-get');
    assert.equal(at({ path: '/apix' }), 'public/default');
  });
  it('method sets and first match wins', () => {
    assert.equal(at({ path: '/api/users', method: 'POST' }), 'public/api-write');
    assert.equal(at({ path: '/api/users', method: 'DELETE' }), 'public/default');
    assert.equal(at({ path: '/api/users', method: 'HEAD' }), 'public/api-get');
  });
  it('regex on the path without the query', () => {
    assert.equal(at({ path: '/v2/items?x=1' }), 'public/versioned');
    assert.equal(at({ path: '/v2/items/1' }), 'public/default');
  });
  it('header exact, absent and prefix', () => {
    assert.equal(at({ path: '/x', headers: { 'x-beta': '1' } }), 'public/beta-header');
    assert.equal(at({ path: '/x', headers: { 'x-beta': '2' } }), 'public/default');
    assert.equal(at({ path: '/static/a.css' }), 'public/no-cookie');
    assert.equal(at({ path: '/static/a.css', headers: { cookie: 'a=b' } }), 'public/default');
    assert.equal(at({ path: '/x', headers: { authorization: 'Bearer abc' } }), 'public/bearer');
    assert.equal(at({ path: '/x', headers: { authorization: 'Basic abc' } }), 'public/default');
  });
  it('host predicate inside a gateway', () => {
    assert.equal(route({ gateway: 'public', host: 'special.example.com', path: '/x' }), 'public/hosted');
  });
  it('a TCP check only matches routes without HTTP predicates', () => {
    const view = toRequestView({ attributes: { context_extensions: { gateway: 'internal' } } });
    const gw = table.selectGateway(view)!;
    assert.equal(table.selectRoute(gw, view).name, 'all');
    const pub = table.gateways.get('public')!;
    assert.equal(table.selectRoute(pub, view).name, 'default');
  });
});
