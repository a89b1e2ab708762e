/** Shared test parts: a real auth service on loopback, a test identity stage, contexts, configs, key files. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { pino } from 'pino';
import { z } from 'zod';
import { CheckContext, type Identity } from '../../ext-authz/src/pipeline/context.js';
import { CONTINUE } from '../../ext-authz/src/pipeline/decision.js';
import { toRequestView } from '../../ext-authz/src/pipeline/request-view.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import type { PassgateConfig } from '../../ext-authz/src/config/schema.js';
import type { CompiledGateway, CompiledRoute } from '../../ext-authz/src/routing/route-table.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import type { StageFactoryContext } from '../../ext-authz/src/stages/stage.js';
import type { Prepared } from '../../ext-authz/src/capabilities/capability.js';
import { passportCapability } from '../../ext-authz/src/passport/capability.js';
import type { PassportState } from '../../ext-authz/src/passport/runtime.js';
import { testComposition, TEST_IDENTITY } from '../support/test-stages.js';

export { TEST_IDENTITY };

export const silent = pino({ level: 'silent' });

export type AuthMode = 'ok' | 'error500' | 'garbage' | 'hang';

/**
 * A real HTTP auth/user service. `users` maps subject → answer body; unknown
 * subjects get 404. `mode` breaks it on purpose.
 */
export class AuthService {
  mode: AuthMode = 'ok';
  requests: URL[] = [];
  /** Held responses in 'hang' mode, released on close. */
  private held: ServerResponse[] = [];
  private gate: (() => void) | undefined;
  private pending: Promise<void> | undefined;
  private server: Server;
  port = 0;

  constructor(public users: Record<string, unknown>) {
    this.server = createServer((req, res) => this.handle(req, res));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/v1/facts`;
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** Holds requests until `release()` (for single-flight tests). */
  holdNext(): void {
    this.pending = new Promise<void>((r) => (this.gate = r));
  }
  release(): void {
    this.gate?.();
    this.gate = undefined;
    this.pending = undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push(url);
    const go = () => {
      if (this.mode === 'hang') {
        this.held.push(res);
        return;
      }
      if (this.mode === 'error500') {
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}');
        return;
      }
      if (this.mode === 'garbage') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"user": {"id": "u1", "roles": [');
        return;
      }
      const subject = url.searchParams.get('subject') ?? url.pathname.split('/').pop() ?? '';
      const body = this.users[subject];
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (this.pending) void this.pending.then(go);
    else go();
  }

  async close(): Promise<void> {
    for (const r of this.held) r.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const GATEWAY: CompiledGateway = {
  name: 'test',
  kind: 'public',
  trustXfcc: false,
  challenge: 'Bearer realm="test"',
  routes: [],
  defaultRoute: { name: 'default', matches: () => true, stages: [], failureMode: 'closed' },
};
const ROUTE: CompiledRoute = { name: 'r', matches: () => true, stages: [], failureMode: 'closed' };

export function identity(subject: string, extra: Partial<Identity> = {}): Identity {
  return { subject, kind: 'user', source: 'mtls', attributes: {}, groups: [], ...extra };
}

export function ctxFor(id: Identity | undefined, deadlineMs = 10_000, headers: Record<string, string> = {}): CheckContext {
  const view = toRequestView({ attributes: { request: { http: { method: 'GET', path: '/x', host: 'h', headers } } } });
  const ctx = new CheckContext(view, GATEWAY, ROUTE, Date.now() + deadlineMs, 'trace', 0);
  ctx.identity = id;
  return ctx;
}

export function header(ctx: CheckContext, name: string): string | undefined {
  return ctx.upstreamHeaders.find(([k]) => k === name)?.[1];
}

/** A full config with the given passport section and one gateway whose route runs `stages`. */
export function configWith(passport: unknown, stages: unknown[] = ['passport'], extra: Record<string, unknown> = {}): PassgateConfig {
  return validateConfig({
    gateways: {
      public: {
        kind: 'public',
        routes: [
          { name: 'app', match: { path: { prefix: '/app' } }, stages },
          { name: 'bare', match: { path: { prefix: '/bare' } }, stages: ['allow'] },
        ],
      },
    },
    defaultGateway: 'public',
    passport,
    ...extra,
  }, undefined, testComposition());
}

export function passportSection(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    issuer: 'https://passgate.test',
    audience: ['orders', 'billing'],
    keys: { active: 'k1', entries: [{ id: 'k1', generate: true }] },
    source: {
      type: 'static',
      users: {
        alice: { id: 'u-alice', roles: ['admin'], scopes: ['orders:read'], devices: { 'd-1': { type: 'mobile', os: 'ios', appVersion: '1.2.3' } } },
      },
    },
    ...overrides,
  };
}

/** A stage factory context with the passport state prepared for `config`, as the service would (passport prepares synchronously). */
export function factory(config: PassgateConfig, metrics = new Metrics(false)): StageFactoryContext<PassportState | undefined> {
  const prepared = passportCapability.prepare(config, { logger: silent, metrics, previous: undefined, stageDefinition: () => undefined, dependency: () => undefined as never }) as Prepared<PassportState | undefined>;
  return { config, logger: silent, metrics, state: prepared.state, path: 'gateways.public.routes[0].stages[0]' };
}

/** Writes key files (PEM private, JWK private, PEM public, garbage) into a temp dir. */
export function keyFiles(): { dir: string; edPem: string; edJwk: string; ecPem: string; edPublicPem: string; garbage: string } {
  const dir = mkdtempSync(join(tmpdir(), 'passgate-keys-'));
  const ed = generateKeyPairSync('ed25519');
  const ed2 = generateKeyPairSync('ed25519');
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const edPem = join(dir, 'ed.pem');
  writeFileSync(edPem, ed.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const edJwk = join(dir, 'ed2.jwk');
  writeFileSync(edJwk, JSON.stringify(ed2.privateKey.export({ format: 'jwk' })));
  const ecPem = join(dir, 'ec.pem');
  writeFileSync(ecPem, ec.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const edPublicPem = join(dir, 'ed.pub.pem');
  writeFileSync(edPublicPem, ed.publicKey.export({ format: 'pem', type: 'spki' }));
  const garbage = join(dir, 'not-a-key.pem');
  writeFileSync(garbage, 'this is the README someone mounted instead of the key\n');
  return { dir, edPem, edJwk, ecPem, edPublicPem, garbage };
}
