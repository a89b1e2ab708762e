/**
 * The SSO part of `npm start` (development only): a local OpenID Provider
 * (`oidc-provider` with its built-in development login form: any login and
 * password is accepted; try `alice`, who is in the demo admins group), a
 * Passgate service whose internal gateway logs users in through it (sessions
 * in the memory FDS store), and a local gateway listener in front of the echo
 * upstream. Open the printed URL in a browser, log in, and the echo shows the
 * identity headers Passgate set; /admin needs the `admins` group.
 *
 * Ports: SSO_PROVIDER_PORT (8082), SSO_GATEWAY_PORT (8083); 0 = any free port.
 * Browsers accept the `__Host-` cookie over http://localhost (a secure context).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { LocalGateway } from './gateway.js';

export interface SsoDemo {
  /** Lines for the banner. */
  readonly banner: readonly string[];
  stop(): Promise<void>;
}

const DEMO_GROUPS: Record<string, string[]> = { alice: ['staff', 'admins'] };

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

export async function startSsoDemo(o: { host: string; providerPort: number; gatewayPort: number; upstreamPort: number; logger: Logger }): Promise<SsoDemo> {
  const { default: Provider } = (await import('oidc-provider')) as { default: any };
  const secret = randomBytes(24).toString('base64url');
  const opServer = createServer();
  const providerPort = await listen(opServer, o.host, o.providerPort);
  const issuer = `http://localhost:${providerPort}`;
  // The gateway's port must be known for the client registration: bind it first, hand it to the gateway after.
  const probe = createServer();
  const gatewayPort = await listen(probe, o.host, o.gatewayPort);
  await new Promise<void>((r) => probe.close(() => r()));
  const origin = `http://localhost:${gatewayPort}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'passgate-demo',
        client_secret: secret,
        redirect_uris: [`${origin}/oauth2/callback`],
        post_logout_redirect_uris: [`${origin}/`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        backchannel_logout_uri: `${origin}/oauth2/backchannel-logout`,
        backchannel_logout_session_required: true,
      },
    ],
    claims: { openid: ['sub'], email: ['email'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    conformIdTokenClaims: false,
    findAccount: async (_ctx: unknown, id: string) => ({
      accountId: id,
      claims: async () => ({ sub: id, name: id, email: `${id}@demo.example`, groups: DEMO_GROUPS[id] ?? ['staff'] }),
    }),
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true }, backchannelLogout: { enabled: true } },
    // Loopback only, development only: the provider's SSRF guard would refuse the back-channel call to localhost.
    fetch: (url: string, options: RequestInit & { dispatcher?: unknown }) => {
      delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
  });
  opServer.on('request', provider.callback());
  const oidcStage = { type: 'oidc', identityHeaders: { 'x-auth-request-user': 'sub', 'x-auth-request-email': 'email', 'x-auth-request-groups': 'groups' } };
  const config = parseConfigText(
    JSON.stringify({
      server: { grpc: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, defaultDeadlineMs: 5_000 },
      logging: { level: 'warn', audit: false },
      headers: { internal: ['x-passport', 'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-groups'] },
      fds: { store: 'memory' },
      oidc: {
        providers: { demo: { issuer, clientId: 'passgate-demo', clientSecret: secret, allowInsecureHttp: true, scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'] } },
      },
      gateways: {
        tools: {
          kind: 'internal',
          routes: [{ name: 'admin', match: { path: { prefix: '/admin' } }, stages: ['fds', oidcStage, { type: 'authorize', groups: ['admins'] }, 'allow'] }],
          defaultRoute: { stages: ['fds', oidcStage, 'allow'] },
        },
      },
      defaultGateway: 'tools',
    }),
    'npm-start-sso (inline)',
  );
  const service = await PassgateService.start({ config, logger: o.logger.child({ component: 'sso-demo' }), grpcPort: 0, adminPort: 0, processMetrics: false, watchConfig: false });
  const gateway = await LocalGateway.start({
    listeners: [{ name: 'sso', host: o.host, port: gatewayPort, contextExtensions: { gateway: 'tools' } }],
    upstream: { host: o.host, port: o.upstreamPort },
    extAuthz: { target: `127.0.0.1:${service.grpcPort}`, timeoutMs: 5_000, statusOnError: 503, withRequestBody: { maxRequestBytes: 16_384 } },
    logger: o.logger.child({ component: 'sso-gateway' }),
  });
  return {
    banner: [
      '  Single sign-on demo (oidc stage; a local OpenID Provider, development only):',
      `    open ${origin}/ in a browser, log in as any name (alice is in "admins": ${origin}/admin), password anything`,
      `    log out: ${origin}/oauth2/logout        provider: ${issuer}/.well-known/openid-configuration`,
    ],
    async stop() {
      await gateway.stop();
      await service.stop(500);
      opServer.closeAllConnections();
      await new Promise<void>((r) => opServer.close(() => r()));
    },
  };
}
