/**
 * A real OpenID Provider (`oidc-provider` from npm) on loopback for the oidc
 * tests: authorization code + PKCE, refresh tokens, RP-initiated logout and
 * back-channel logout. Login and consent are answered without a form: the
 * account is the one the scripted browser names in `x-test-user` (so two
 * browsers can log in as two people at once). `mode` makes it fail as a
 * real one does (down: connections reset), and `tamper` rewrites the token
 * response's ID token claims (wrong iss/aud/nonce) by re-signing with the
 * provider's own key, so only the claim check can catch it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, decodeJwt, type JWK, type CryptoKey } from 'jose';
import Provider from 'oidc-provider';

export const CLIENT = { id: 'passgate-sso', secret: 'passgate-sso-secret-0123456789abcdef' };

export const ACCOUNTS: Record<string, { email: string; name: string; groups: string[] }> = {
  alice: { email: 'alice@corp.example', name: 'Alice', groups: ['staff', 'admins'] },
  bob: { email: 'bob@corp.example', name: 'Bob', groups: ['staff'] },
};

export type Mode = 'ok' | 'down';

export class TestOpenIdProvider {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private provider: any;
  private handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  private key: CryptoKey | undefined;
  private inner: Server | undefined;
  private innerUrl = '';
  private kid = 'test-key-1';
  issuer = '';
  mode: Mode = 'ok';
  /** Access token lifetime in seconds (refresh tests shorten it). */
  accessTtl = 3600;
  /** Rewrite ID token claims in the next code exchange answers (e.g. { nonce: 'x' }). */
  tamper: Record<string, unknown> | undefined;
  /** Calls seen, by kind. */
  readonly seen = { codeGrants: 0, refreshGrants: 0, refreshFailures: 0 };
  /** Back-channel logout deliveries the provider made (its own event). */
  backchannelSent = 0;
  backchannelErrors: string[] = [];

  constructor() {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.issuer = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** The signing key (tests forge logout tokens with it). */
  signingKey(): { key: CryptoKey; kid: string } {
    return { key: this.key!, kid: this.kid };
  }

  /** Starts the provider for a relying party at `rpOrigin` (the gateway). */
  async configure(rpOrigin: string, extraRedirectOrigins: string[] = []): Promise<void> {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    this.key = privateKey;
    const jwk: JWK = { ...(await exportJWK(privateKey)), kid: this.kid, alg: 'RS256', use: 'sig' };
    const origins = [rpOrigin, ...extraRedirectOrigins];
    const p = new Provider(this.issuer, {
      clients: [
        {
          client_id: CLIENT.id,
          client_secret: CLIENT.secret,
          redirect_uris: origins.map((o) => `${o}/oauth2/callback`),
          post_logout_redirect_uris: origins.map((o) => `${o}/`),
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_basic',
          backchannel_logout_uri: `${rpOrigin}/oauth2/backchannel-logout`,
          backchannel_logout_session_required: true,
        },
      ],
      jwks: { keys: [jwk] },
      scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
      conformIdTokenClaims: false,
      pkce: { required: () => true },
      findAccount: async (_ctx: unknown, id: string) => ({
        accountId: id,
        claims: async () => ({ sub: id, email: ACCOUNTS[id]?.email, email_verified: true, name: ACCOUNTS[id]?.name, groups: ACCOUNTS[id]?.groups }),
      }),
      interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
      issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(g: string): boolean }) => client.grantTypeAllowed('refresh_token'),
      ttl: {
        AccessToken: () => this.accessTtl,
        IdToken: 3600,
        RefreshToken: 86_400,
        Grant: 86_400,
        Session: 86_400,
        Interaction: 600,
      },
      cookies: { keys: ['test-cookie-key-0123456789'] },
      // Its SSRF guard refuses loopback targets; the back-channel logout goes to the gateway on 127.0.0.1 here.
      fetch: (url: string, options: RequestInit & { dispatcher?: unknown }) => {
        delete options.dispatcher;
        return globalThis.fetch(url, options);
      },
      features: {
        devInteractions: { enabled: false },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx: { body: string }, form: string) => {
            ctx.body = `<!DOCTYPE html><html><body>${form}<button form="op.logoutForm" name="logout" value="yes">yes</button></body></html>`;
          },
        },
        backchannelLogout: { enabled: true },
      },
    });
    p.proxy = false;
    p.on('backchannel.success', () => this.backchannelSent++);
    p.on('backchannel.error', (_ctx: unknown, err: Error) => this.backchannelErrors.push(`${err.message} ${String((err as { cause?: unknown }).cause ?? '')}`));
    p.on('grant.error', (_ctx: unknown, err: Error) => {
      if ((err as { error?: string }).error === 'invalid_grant') this.seen.refreshFailures++;
    });
    this.provider = p;
    this.handler = p.callback();
    // The token endpoint is reached through an inner port, so the outer one can count and rewrite answers.
    this.inner = createServer((req, res) => this.handler!(req, res));
    await new Promise<void>((r) => this.inner!.listen(0, '127.0.0.1', r));
    this.innerUrl = `http://127.0.0.1:${(this.inner.address() as AddressInfo).port}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.mode === 'down') {
      req.socket.destroy();
      return;
    }
    const path = req.url ?? '';
    try {
      if (path.startsWith('/interaction/')) return await this.interact(req, res);
      if (path === '/token' && req.method === 'POST') return await this.token(req, res);
      this.handler!(req, res);
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String((err as Error).stack));
    }
  }

  /** Login and consent without forms: the account named by the browser's x-test-user header. */
  private async interact(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const p = this.provider;
    const details = await p.interactionDetails(req, res);
    const user = String(req.headers['x-test-user'] ?? 'alice');
    if (details.prompt.name === 'login') {
      await p.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = details.grantId ? await p.Grant.find(details.grantId) : new p.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const d = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    const grantId = await grant.save();
    await p.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  /** Counts grants, and rewrites the ID token when `tamper` is set: the request goes to the provider on its inner port. */
  private async token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const grant = new URLSearchParams(body.toString()).get('grant_type');
    if (grant === 'authorization_code') this.seen.codeGrants++;
    if (grant === 'refresh_token') this.seen.refreshGrants++;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length' && k !== 'connection') headers[k] = v;
    const answer = await fetch(`${this.innerUrl}/token`, { method: 'POST', headers, body });
    let text = await answer.text();
    if (this.tamper !== undefined && grant === 'authorization_code' && answer.ok) {
      const json = JSON.parse(text) as Record<string, unknown>;
      const claims = { ...decodeJwt(json['id_token'] as string), ...this.tamper };
      json['id_token'] = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: this.kid }).sign(this.key!);
      text = JSON.stringify(json);
    }
    res.writeHead(answer.status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(text);
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.inner?.closeAllConnections();
    this.inner?.close();
    return new Promise((r) => this.server.close(() => r()));
  }
}
