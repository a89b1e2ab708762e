/**
 * The certificate decoder Passgate used before issue 18 (pure-JS ASN.1 via
 * @peculiar/x509), kept only as the reference the Node X509Certificate path
 * is compared with field by field (certificate-parity.ts, x509-parity.test.ts).
 */
import { createHash } from 'node:crypto';
import { x509 } from '../../ext-authz/src/identity/x509.js';
import { certificateNames } from '../../ext-authz/src/identity/rfc2253.js';
import type { CertificateFacts } from '../../ext-authz/src/identity/certificate.js';

export interface ReferenceDecoding {
  readonly facts: CertificateFacts;
  /** What leafProblem decided from @peculiar/x509's basicConstraints and extendedKeyUsage. */
  readonly leafProblem: string | undefined;
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';

export function referenceDecode(der: Uint8Array): ReferenceDecoding {
  const cert = new x509.X509Certificate(new Uint8Array(der));
  const uri: string[] = [];
  const dns: string[] = [];
  const email: string[] = [];
  const ip: string[] = [];
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  for (const name of san?.names.items ?? []) {
    if (name.type === 'url') uri.push(name.value);
    else if (name.type === 'dns') dns.push(name.value);
    else if (name.type === 'email') email.push(name.value);
    else if (name.type === 'ip') ip.push(name.value);
  }
  const { subject, issuer } = certificateNames(der);
  const facts: CertificateFacts = {
    fingerprint: createHash('sha256').update(der).digest('hex'),
    serial: cert.serialNumber.replace(/[:\s]/g, '').toLowerCase().replace(/^0+(?=.)/, ''),
    subject,
    issuer,
    notBefore: cert.notBefore.getTime(),
    notAfter: cert.notAfter.getTime(),
    sans: { uri, dns, email, ip },
    spiffe: uri.filter((u) => u.startsWith('spiffe://')),
    principal: uri[0] ?? dns[0] ?? subject,
  };
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  let leafProblem: string | undefined;
  if (bc !== null && bc.ca) leafProblem = 'a CA certificate cannot authenticate a client';
  else if (eku !== null) {
    const usages = eku.usages.map(String);
    if (!usages.includes(CLIENT_AUTH) && !usages.includes(ANY_EKU)) leafProblem = 'the certificate\'s extendedKeyUsage does not allow clientAuth';
  }
  return { facts, leafProblem };
}

/** The previous signature check: @peculiar/x509 over WebCrypto (async, a public key import per call). */
export async function referenceSignedBy(der: Uint8Array, issuerDer: Uint8Array): Promise<boolean> {
  const cert = new x509.X509Certificate(new Uint8Array(der));
  const issuer = new x509.X509Certificate(new Uint8Array(issuerDer));
  return cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
}
