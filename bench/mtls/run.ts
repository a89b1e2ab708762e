/**
 * `npm run bench:mtls`: what XFCC + certificate handling adds to a Check.
 * Drives `Checker.check` in-process (the same pipeline the gRPC server
 * calls) on an mTLS gateway and compares, per operation:
 *   bare          allow-only route, same request shape (the baseline)
 *   warm          mtls stage, the same certificate every time (cache hit)
 *   cold          mtls stage, a never-seen certificate every time (URL-decode, ASN.1 parse, SHA-256, mapping)
 *   warm+CA/cold+CA  the same with identity.mtls.ca set (cold adds an ECDSA signature check, async)
 *   ingress       warm+CA with the peer principal beside XFCC, as at an Istio MUTUAL gateway
 *   decode        first sight of a certificate alone: the DER reader (the service) and Node's X509Certificate
 *                 constructor alone (what the previous path paid before reading any field), against the
 *                 older @peculiar/x509 decoder, same certificates,
 *                 interleaved rounds; with CA: plus the signature check each way
 * Prints a table of µs/op and the ratio to bare. Takes well under a minute.
 */
import { X509Certificate } from 'node:crypto';
import { pino } from 'pino';
import { createCa, issueCertificate, toXfcc, type CertificateAuthority } from '../../ext-authz/src/devcerts/generate.js';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { assemble } from '../../ext-authz/src/server/assemble.js';
import { buildCheckRequest } from '../../ext-authz/src/proto/check-request.js';
import { Checker } from '../../ext-authz/src/check/checker.js';
import { Metrics } from '../../ext-authz/src/observability/metrics.js';
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';
import { decodeCertificate, verifyChain } from '../../ext-authz/src/identity/certificate.js';
import { referenceDecode, referenceSignedBy } from '../../test/support/peculiar-decoder.js';

const COLD_CERTS = Number(process.env['BENCH_COLD_CERTS'] ?? 1000);
const WARM_OPS = Number(process.env['BENCH_WARM_OPS'] ?? 50_000);

function config(ca: CertificateAuthority | undefined): string {
  const caBlock = ca ? `    ca:\n      pem: |\n${ca.pem.trimEnd().split('\n').map((l) => `        ${l}`).join('\n')}\n` : '';
  return `
logging: { level: silent, audit: false }
identity:
  mtls:
${caBlock}    cacheSize: 100000
    rules:
      - uri: { regex: "spiffe://partners\\\\.example\\\\.com/org/(?<org>[^/]+)/user/(?<user>[^/]+)" }
        identity: { subject: "{user}@{org}", kind: user, attributes: { org: "{org}" } }
gateways:
  secure:
    kind: secure
    trustXfcc: true
    routes:
      - { name: bare, match: { path: { prefix: /bare } }, stages: [allow] }
      - { name: mtls, match: { path: { prefix: /m } }, stages: [mtls, allow] }
`;
}

async function checker(ca: CertificateAuthority | undefined): Promise<Checker> {
  const cfg = parseConfigText(config(ca), 'bench.yaml');
  const logger = pino({ level: 'silent' });
  const metrics = new Metrics(false);
  const { table } = await assemble(cfg, { logger, metrics });
  return new Checker(table, { logger, metrics });
}

function request(path: string, xfcc: string, principal?: string): CheckRequest {
  return buildCheckRequest({
    path,
    host: 'secure.example.com',
    headers: { 'user-agent': 'bench', 'x-request-id': 'bench-1', 'x-forwarded-client-cert': xfcc },
    sourcePort: 5000,
    id: '1',
    gateway: 'secure',
    ...(principal ? { principal } : {}),
  });
}

function assertAllowed(res: CheckResponse, what: string): void {
  if ((res.status?.code ?? 0) !== 0) throw new Error(`${what}: expected allow, got ${JSON.stringify(res.denied_response?.body ?? res.status)}`);
}

async function time(c: Checker, reqs: readonly CheckRequest[], ops: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const r = c.check(reqs[i % reqs.length], deadline);
    if (r instanceof Promise) await r;
  }
  return Number(process.hrtime.bigint() - start) / 1000 / ops;
}

async function main(): Promise<void> {
  process.stdout.write(`generating ${COLD_CERTS * 2 + 1} client certificates...\n`);
  const root = await createCa();
  const sans = (i: number) => ({ uri: [`spiffe://partners.example.com/org/org${i % 50}/user/u${i}`], dns: [`u${i}.partners.example.com`] });
  const warmCert = await issueCertificate({ ca: root, subject: 'CN=warm,O=Bench', sans: sans(0) });
  const coldA: string[] = [];
  const coldB: string[] = [];
  for (let i = 0; i < COLD_CERTS; i++) coldA.push(toXfcc(await issueCertificate({ ca: root, sans: sans(i + 1) })));
  for (let i = 0; i < COLD_CERTS; i++) coldB.push(toXfcc(await issueCertificate({ ca: root, sans: sans(i + 1) })));
  const warmXfcc = toXfcc(warmCert);

  const plain = await checker(undefined);
  const withCa = await checker(root);
  const bareReq = [request('/bare', warmXfcc)];
  const warmReq = [request('/m', warmXfcc)];
  // Istio ingress: Envoy sends the peer principal and the sanitized XFCC of the same client.
  const ingressReq = [request('/m', warmXfcc, 'spiffe://partners.example.com/org/org0/user/u0')];
  const coldReqA = coldA.map((x) => request('/m', x));
  const coldReqB = coldB.map((x) => request('/m', x));

  // Correctness first: every path must allow, or the numbers measure denials.
  for (const [c, r, what] of [
    [plain, bareReq[0]!, 'bare'],
    [plain, warmReq[0]!, 'warm'],
    [withCa, warmReq[0]!, 'warm+CA'],
    [withCa, ingressReq[0]!, 'ingress'],
  ] as const) {
    assertAllowed(await c.check(r, Date.now() + 60_000), what);
  }

  // JIT warm-up on throwaway work, then measure.
  await time(plain, bareReq, 20_000);
  await time(plain, warmReq, 20_000);
  await time(withCa, warmReq, 20_000);

  const rows: Array<[string, number, number]> = [];
  const bare = await time(plain, bareReq, WARM_OPS);
  rows.push(['bare (allow only)', bare, WARM_OPS]);
  rows.push(['mtls warm (cached cert)', await time(plain, warmReq, WARM_OPS), WARM_OPS]);
  rows.push(['mtls cold (new cert each op)', await time(plain, coldReqA, coldReqA.length), coldReqA.length]);
  rows.push(['mtls+CA warm (cached, verified)', await time(withCa, warmReq, WARM_OPS), WARM_OPS]);
  rows.push(['mtls+CA warm, principal + XFCC (ingress)', await time(withCa, ingressReq, WARM_OPS), WARM_OPS]);
  rows.push(['mtls+CA cold (parse + ECDSA verify)', await time(withCa, coldReqB, coldReqB.length), coldReqB.length]);
  // The cold sets were used once each; a check that they are now cached and allowed:
  assertAllowed(await withCa.check(coldReqB[0]!, Date.now() + 60_000), 'cold+CA re-check');

  // First sight of a certificate, decoder alone: the service's path against the previous one, same DERs, interleaved.
  const ders = [...coldA, ...coldB].map((x) => Buffer.from(decodeURIComponent(/Cert="([^"]+)"/.exec(x)![1]!).replace(/-----[A-Z ]+-----|\s/g, ''), 'base64'));
  const pems = ders.map((d) => `-----BEGIN CERTIFICATE-----\n${d.toString('base64')}\n-----END CERTIFICATE-----\n`);
  const rootParsed = decodeCertificate(root.pem);
  if (!rootParsed.ok) throw new Error(rootParsed.error);
  const anchors = { roots: [rootParsed.value] };
  const perOp = async (f: (i: number) => unknown): Promise<number> => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ders.length; i++) {
      const r = f(i);
      if (r instanceof Promise) await r;
    }
    return Number(process.hrtime.bigint() - start) / 1000 / ders.length;
  };
  const nodeDecode = (i: number) => {
    const r = decodeCertificate(pems[i]!);
    if (!r.ok) throw new Error(r.error);
    return r.value;
  };
  const nodeWithCa = (i: number) => {
    const o = verifyChain(nodeDecode(i), [], anchors);
    if (!o.ok) throw new Error(o.error);
  };
  const oldWithCa = async (i: number) => {
    referenceDecode(ders[i]!);
    if (!(await referenceSignedBy(ders[i]!, root.der))) throw new Error('reference verify failed');
  };
  const sums = { node: 0, old: 0, nodeCa: 0, oldCa: 0, ctor: 0 };
  const ROUNDS = 3;
  for (let round = 0; round < ROUNDS; round++) {
    sums.old += await perOp((i) => referenceDecode(ders[i]!));
    sums.node += await perOp(nodeDecode);
    sums.oldCa += await perOp(oldWithCa);
    sums.nodeCa += await perOp(nodeWithCa);
    sums.ctor += await perOp((i) => new X509Certificate(ders[i]!));
  }
  const n = ROUNDS * ders.length;
  rows.push(['decode cold: previous (@peculiar/x509)', sums.old / ROUNDS, n]);
  rows.push(['decode cold: X509Certificate constructor alone', sums.ctor / ROUNDS, n]);
  rows.push(['decode cold: DER reader (the service)', sums.node / ROUNDS, n]);
  rows.push(['decode+verify cold: previous (WebCrypto)', sums.oldCa / ROUNDS, n]);
  rows.push(['decode+verify cold: DER + crypto.verify', sums.nodeCa / ROUNDS, n]);

  const w = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`\n${'case'.padEnd(w)}  ${'µs/op'.padStart(9)}  ${'x bare'.padStart(7)}  ${'ops'.padStart(8)}\n`);
  process.stdout.write(`${'-'.repeat(w)}  ${'-'.repeat(9)}  ${'-'.repeat(7)}  ${'-'.repeat(8)}\n`);
  for (const [name, us, ops] of rows) {
    process.stdout.write(`${name.padEnd(w)}  ${us.toFixed(2).padStart(9)}  ${(us / bare).toFixed(1).padStart(7)}  ${String(ops).padStart(8)}\n`);
  }
  process.stdout.write(`\ncold certificate, decoder alone: ${(sums.node / ROUNDS / 1000).toFixed(3)} ms (goal ≤ 0.3 ms), ${(sums.ctor / sums.node).toFixed(1)}x faster than Node's X509Certificate constructor alone (the previous path's floor), ${(sums.old / sums.node).toFixed(1)}x than @peculiar/x509; with the CA signature check ${(sums.nodeCa / ROUNDS / 1000).toFixed(3)} ms, ${(sums.oldCa / sums.nodeCa).toFixed(1)}x (${ROUNDS} interleaved rounds over ${ders.length} certificates)\n`);
  process.stdout.write(`\nadded by mTLS: warm ${(rows[1]![1] - bare).toFixed(2)} µs, cold ${(rows[2]![1] - bare).toFixed(2)} µs, cold with CA ${(rows[5]![1] - bare).toFixed(2)} µs per Check\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:mtls failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
