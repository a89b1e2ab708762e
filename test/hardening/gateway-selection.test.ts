/**
 * Issue 12 item 5: the profile that judges a request is chosen by what the
 * client cannot choose (context_extensions, then destination port / SNI);
 * Host selects only among profiles bound to no port. Over real gRPC.
 */
import assert from 'node:assert/strict';
import { httpCheck, startService, type Running } from '../support/service.js';

const YAML = `
gateways:
  secure:
    kind: secure
    select: { hosts: [secure.example.com], ports: [8443] }
    routes: [{ name: admin, stages: [{ type: deny, status: 403, reason: judged_by_secure }] }]
  public:
    kind: public
    select: { hosts: [www.example.com], ports: [8080] }
    routes: [{ name: all, stages: [{ type: deny, status: 403, reason: judged_by_public }] }]
  portless:
    kind: app
    select: { hosts: [app.example.com] }
    routes: [{ name: all, stages: [{ type: deny, status: 403, reason: judged_by_portless }] }]
defaultGateway: public
`;

describe('gateway selection trust order (issue 12 item 5)', () => {
  let svc: Running;
  before(async () => {
    svc = await startService(YAML);
  });
  after(async () => svc.stop());

  async function judge(opts: { host: string; port: number; gateway?: string; sni?: string }): Promise<string> {
    const req = httpCheck({ host: opts.host, destinationPort: opts.port, ...(opts.gateway ? { gateway: opts.gateway } : {}) });
    if (opts.sni) (req.attributes as Record<string, unknown>)['tls_session'] = { sni: opts.sni };
    const res = await svc.check(req);
    return String(JSON.parse(res.denied_response?.body ?? '{}').reason);
  }

  it('plain port + Host of the mTLS profile → not the mTLS profile', async () => {
    assert.equal(await judge({ host: 'secure.example.com', port: 8080 }), 'judged_by_public');
    assert.equal(await judge({ host: 'secure.example.com:8443', port: 8080 }), 'judged_by_public');
  });
  it('context_extensions first, over port and Host', async () => {
    assert.equal(await judge({ host: 'www.example.com', port: 8080, gateway: 'secure' }), 'judged_by_secure');
  });
  it('destination port second, over SNI and Host', async () => {
    assert.equal(await judge({ host: 'www.example.com', port: 8443 }), 'judged_by_secure');
    assert.equal(await judge({ host: 'app.example.com', port: 8443, sni: 'app.example.com' }), 'judged_by_secure');
  });
  it('SNI then Host only on an unbound port, and only among profiles that bind no port', async () => {
    assert.equal(await judge({ host: 'www.example.com', port: 9999, sni: 'app.example.com' }), 'judged_by_portless');
    assert.equal(await judge({ host: 'app.example.com', port: 9999 }), 'judged_by_portless');
    // A port-bound profile's host on another port falls to the default.
    assert.equal(await judge({ host: 'secure.example.com', port: 9999 }), 'judged_by_public');
    assert.equal(await judge({ host: 'www.example.com', port: 9999, sni: 'secure.example.com' }), 'judged_by_public');
  });
});
