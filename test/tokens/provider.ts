/**
 * A real OIDC provider (`oidc-provider` from npm) on loopback, issuing JWT
 * access tokens for a resource through client_credentials (resource
 * indicators), DPoP-bound when the token request carries a DPoP proof.
 * `rotate()` swaps in a provider with a new signing key (the old one still
 * published), as a real rotation does.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';
import { generateProof } from 'dpop';

export const RESOURCE = 'https://api.example.com';
const CLIENT_ID = 'web-app';
const CLIENT_SECRET = 'web-app-secret-0123456789abcdef';

function signingJwk(): Record<string, unknown> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(6).toString('hex'), alg: 'ES256', use: 'sig' };
}

export class TestProvider {
  private server: Server;
  private current: { callback(): (req: unknown, res: unknown) => void } | undefined;
  private keys: Record<string, unknown>[] = [signingJwk()];
  issuer = '';
  port = 0;

  constructor() {
    this.server = createServer((req, res) => this.current!.callback()(req, res));
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    this.issuer = `http://127.0.0.1:${this.port}`;
    this.current = this.build();
    return this;
  }

  private build(): { callback(): (req: unknown, res: unknown) => void } {
    const p = new Provider(this.issuer, {
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: 'read write', id_token_signed_response_alg: 'ES256' }],
      jwks: { keys: this.keys as never },
      scopes: ['read', 'write'],
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        dPoP: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => RESOURCE,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({ scope: 'read write', audience: RESOURCE, accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg: 'ES256' } } }),
        },
      },
    });
    p.proxy = false;
    return p;
  }

  get kids(): string[] {
    return this.keys.map((k) => k['kid'] as string);
  }

  /** New signing key first; the old one stays published (tokens already out keep verifying). */
  rotate(): void {
    this.keys = [signingJwk(), ...this.keys.slice(0, 1)];
    this.current = this.build();
  }

  /** A client_credentials access token; DPoP-bound to `key` when given. */
  async token(key?: CryptoKeyPair, scope = 'read'): Promise<string> {
    const url = `${this.issuer}/token`;
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
    };
    if (key) headers['dpop'] = await generateProof(key, url, 'POST');
    const res = await fetch(url, { method: 'POST', headers, body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource: RESOURCE }) });
    const body = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`token endpoint: ${res.status} ${JSON.stringify(body)}`);
    return body['access_token'] as string;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}
