/**
 * Mocha root hooks (.mocharc.json `require`): every certificate the tests
 * make through devcerts (ext-authz/src/devcerts/generate.ts) is recorded, and
 * after the last test each one is decoded by the service's decoder (Node's
 * X509Certificate) and by the previous @peculiar/x509 decoder
 * (./peculiar-decoder.ts); any field that differs fails the run in this
 * "after all" hook, naming the certificate and the field.
 */
import { deepStrictEqual } from 'node:assert/strict';
import { onCertificateMade } from '../../ext-authz/src/devcerts/generate.js';
import { decodeCertificate, leafProblem } from '../../ext-authz/src/identity/certificate.js';
import { referenceDecode } from './peculiar-decoder.js';

const seen = new Map<string, Buffer>();
onCertificateMade((der) => {
  // Bounded: distinct certificates only, and a long run makes a few thousand at most.
  if (seen.size < 20_000) seen.set(der.toString('base64'), der);
});

/** Field-by-field differences between the two decoders for one DER certificate (empty when they agree). */
export function decoderDifferences(der: Buffer): string[] {
  const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
  const ours = decodeCertificate(pem);
  let ref;
  try {
    ref = referenceDecode(der);
  } catch (e) {
    return ours.ok ? [`only the Node decoder accepts it (reference: ${(e as Error).message})`] : [];
  }
  if (!ours.ok) return [`only the reference decoder accepts it (Node: ${ours.error})`];
  const out: string[] = [];
  const a = ours.value.facts as unknown as Record<string, unknown>;
  const b = ref.facts as unknown as Record<string, unknown>;
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    try {
      deepStrictEqual(JSON.parse(JSON.stringify(a[k])), JSON.parse(JSON.stringify(b[k])));
    } catch {
      out.push(`${k}: node ${JSON.stringify(a[k])} vs reference ${JSON.stringify(b[k])}`);
    }
  }
  const lp = leafProblem(ours.value);
  if (lp !== ref.leafProblem) out.push(`leafProblem: node ${JSON.stringify(lp)} vs reference ${JSON.stringify(ref.leafProblem)}`);
  return out;
}

export function certificatesMade(): readonly Buffer[] {
  return [...seen.values()];
}

export const mochaHooks = {
  afterAll(this: { timeout(ms: number): void }): void {
    this.timeout(120_000);
    const problems: string[] = [];
    for (const der of seen.values()) {
      const d = decoderDifferences(der);
      if (d.length > 0) problems.push(`certificate ${der.toString('base64').slice(0, 40)}…: ${d.join('; ')}`);
    }
    if (problems.length > 0) throw new Error(`certificate decoders disagree on ${problems.length} of ${seen.size} certificates the tests made:\n${problems.slice(0, 20).join('\n')}`);
  },
};
