/**
 * Shared helpers for the local gateway e2e tests: dev certificates written to
 * a temp dir (for curl), a test config, Debian's curl and Node HTTPS clients.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, issueCertificate, type IssuedCertificate } from '../../../ext-authz/src/devcerts/generate.js';

export const CURL = '/usr/bin/curl';

export interface TestCerts {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** name → { cert (chain PEM), key PEM, issued }, also written as <dir>/<name>.pem and <name>-key.pem */
  readonly clients: Record<'alice' | 'mallory' | 'rogue' | 'service', { cert: string; key: string; issued: IssuedCertificate }>;
}

export async function makeCerts(): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), 'lg-e2e-'));
  const ca = await createCa({ subject: 'CN=Passgate Test Root CA,O=Passgate Test' });
  const other = await createCa({ subject: 'CN=Unknown CA' });
  const server = await issueCertificate({ ca, subject: 'CN=localhost', sans: { dns: ['localhost'], ip: ['127.0.0.1'] }, usage: 'server' });
  const alice = await issueCertificate({ ca, subject: 'CN=alice,O=Acme', sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'], dns: ['alice.acme.example.com'] } });
  const mallory = await issueCertificate({ ca, subject: 'CN=mallory,O=Acme', sans: { uri: ['spiffe://partners.example.com/org/acme/user/mallory'] } });
  const service = await issueCertificate({ ca, subject: 'CN=billing.acme.example.com', sans: { dns: ['billing.acme.example.com'] } });
  // Same SPIFFE id as alice, but from a CA the gateway does not trust.
  const rogue = await issueCertificate({ ca: other, subject: 'CN=alice,O=Acme', sans: { uri: ['spiffe://partners.example.com/org/acme/user/alice'] } });
  const clients = { alice, mallory, rogue, service };
  writeFileSync(join(dir, 'ca.pem'), ca.pem);
  const out = {} as Record<string, { cert: string; key: string; issued: IssuedCertificate }>;
  for (const [name, c] of Object.entries(clients)) {
    writeFileSync(join(dir, `${name}.pem`), c.chainPem);
    writeFileSync(join(dir, `${name}-key.pem`), c.keyPem, { mode: 0o600 });
    out[name] = { cert: c.chainPem, key: c.keyPem, issued: c };
  }
  return { dir, ca: ca.pem, serverCert: server.pem, serverKey: server.keyPem, clients: out as TestCerts['clients'] };
}

export const FDS_TOKEN = 'test-admin-token-0123456789abcdef';

/** The dev chain (mtls → fds → passport on the secure gateway) with test knobs. */
export function testConfigYaml(opts: { ipThreshold?: number } = {}): string {
  return `
logging: { level: silent, audit: false }
identity:
  mtls:
    rules:
      - name: partner-users
        uri: { prefix: "spiffe://partners.example.com/org/acme/user/" }
        identity: { subject: "{rest}", kind: user }
      - name: services
        dns: { suffix: ".acme.example.com" }
        identity: { kind: service }
fds:
  store: memory
  authFailureStatuses: [401]
  rules:
    - { name: ip-auth-failures, events: [auth_failure], subject: ip, threshold: ${opts.ipThreshold ?? 100000}, window: 10m, block: 10m }
  admin: { token: ${FDS_TOKEN} }
passport:
  issuer: https://passgate.test
  audience: [echo]
  keys: { active: k1, entries: [{ id: k1, generate: true }] }
  source:
    type: static
    users:
      alice: { roles: [partner], scopes: [orders:read] }
      mallory: { roles: [partner] }
      billing.acme.example.com: { roles: [service] }
gateways:
  public:
    kind: public
    routes:
      - { name: public, match: { path: { prefix: /public } }, stages: [allow] }
  secure:
    kind: secure
    trustXfcc: true
    challenge: 'Mutual realm="passgate"'
    routes:
      - name: partner
        stages: [{ type: fds }, { type: mtls }, { type: passport }]
`;
}

export interface CurlResult {
  readonly exitCode: number;
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Runs Debian's curl (async: the servers live in this process). */
export function curl(args: readonly string[]): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(CURL, ['-s', '-i', '--max-time', '10', ...args], { encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 }, (err, stdout) => {
      const exitCode = err ? Number((err as NodeJS.ErrnoException & { code?: unknown }).code ?? 1) : 0;
      const split = stdout.indexOf('\r\n\r\n');
      const head = split < 0 ? stdout : stdout.slice(0, split);
      const body = split < 0 ? '' : stdout.slice(split + 4);
      const lines = head.split('\r\n');
      const m = /^HTTP\/[\d.]+ (\d{3})/.exec(lines[0] ?? '');
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ exitCode: Number.isFinite(exitCode) ? exitCode : 1, status: m ? Number(m[1]) : 0, headers, body });
    });
  });
}

/** curl arguments for https://localhost:<port><path> with the test CA and optionally a client certificate. */
export function curlTls(certs: TestCerts, port: number, path: string, client?: keyof TestCerts['clients']): string[] {
  const args = ['--cacert', join(certs.dir, 'ca.pem'), '--resolve', `localhost:${port}:127.0.0.1`];
  if (client) args.push('--cert', join(certs.dir, `${client}.pem`), '--key', join(certs.dir, `${client}-key.pem`));
  args.push(`https://localhost:${port}${path}`);
  return args;
}

export interface NodeResult {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export function nodeRequest(opts: {
  port: number;
  path: string;
  tls?: { ca: string; cert?: string; key?: string };
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer;
}): Promise<NodeResult> {
  return new Promise((resolve, reject) => {
    const base = { host: '127.0.0.1', port: opts.port, path: opts.path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false as const };
    const req = opts.tls
      ? https.request({ ...base, servername: 'localhost', ca: opts.tls.ca, ...(opts.tls.cert ? { cert: opts.tls.cert, key: opts.tls.key } : {}) })
      : http.request(base);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
