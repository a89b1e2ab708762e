/**
 * Client certificates for the mTLS-based bench:check scenarios (mtls,
 * passport, full): one dev CA, a pool of partner user certificates and a few
 * deliberately bad ones, each with the XFCC element an Istio gateway in
 * SANITIZE_SET mode would forward. Made once per process and shared by the
 * scenarios, so `--scenario all` pays for key generation once.
 */
import { createCa, issueCertificate, toXfcc, type CertificateAuthority, type IssuedCertificate } from '../../ext-authz/src/devcerts/generate.js';

export const TRUST_DOMAIN = 'partners.shop.example';
/** Orgs the secure gateway lets in (authorize `attributes.org`). */
export const PARTNER_ORGS = ['acme', 'globex', 'initech', 'umbrella-logistics', 'hooli', 'stark', 'wayne', 'tyrell', 'soylent', 'wonka'] as const;

export interface PoolCert {
  readonly issued: IssuedCertificate;
  /** Envoy's source.principal for this peer: the first URI SAN. */
  readonly principal: string;
  /** Identity subject the mapping rule produces (`{user}@{org}`); empty when no rule maps it. */
  readonly subject: string;
  readonly xfcc: string;
}

export interface CertPool {
  readonly ca: CertificateAuthority;
  /** Good partner users, all mapped, authorized and known to the passport source. */
  readonly good: readonly PoolCert[];
  /** Valid certificate, but its Hash= is another certificate's fingerprint (401 xfcc_hash_mismatch). */
  readonly wrongHash: PoolCert;
  /** Valid chain, URI in a foreign trust domain: no mapping rule matches (403 unknown_client_certificate). */
  readonly unmapped: PoolCert;
  /** Mapped, but its org is not in PARTNER_ORGS (authorize → 403 forbidden_identity; passport: known user). */
  readonly foreignOrg: PoolCert;
  /** Mapped and authorized, but the passport source does not know the user (403 unknown_user). */
  readonly unknownUser: PoolCert;
}

const uriFor = (org: string, user: string) => `spiffe://${TRUST_DOMAIN}/org/${org}/user/${user}`;

async function leaf(ca: CertificateAuthority, uri: string, subject: string, dns?: string): Promise<PoolCert> {
  const issued = await issueCertificate({ ca, sans: { uri: [uri], ...(dns ? { dns: [dns] } : {}) }, notAfter: new Date(Date.now() + 7 * 86_400_000) });
  return { issued, principal: uri, subject, xfcc: toXfcc(issued) };
}

let cached: { size: number; pool: Promise<CertPool> } | undefined;

/** `size` good certificates (users u000..), spread round-robin over PARTNER_ORGS. */
export function certPool(size: number): Promise<CertPool> {
  if (cached?.size === size) return cached.pool;
  const pool = (async (): Promise<CertPool> => {
    const ca = await createCa({ subject: 'CN=Passgate Bench Partner CA,O=Shop' });
    const good: PoolCert[] = [];
    for (let i = 0; i < size; i++) {
      const org = PARTNER_ORGS[i % PARTNER_ORGS.length]!;
      const user = `u${String(i).padStart(3, '0')}`;
      good.push(await leaf(ca, uriFor(org, user), `${user}@${org}`, `${user}.${org}.partners.shop.example`));
    }
    const forged = await leaf(ca, uriFor('acme', 'mallory'), 'mallory@acme');
    const other = good[0]!.issued.fingerprint;
    const wrongHash: PoolCert = { ...forged, xfcc: toXfcc(forged.issued, { hash: other }) };
    const unmapped = await leaf(ca, 'spiffe://contractors.example/ns/batch/sa/export', '');
    const foreignOrg = await leaf(ca, uriFor('cyberdyne', 'u900'), 'u900@cyberdyne');
    const unknownUser = await leaf(ca, uriFor('acme', 'ghost'), 'ghost@acme');
    return { ca, good, wrongHash, unmapped, foreignOrg, unknownUser };
  })();
  cached = { size, pool };
  return pool;
}

/** identity.mtls section matching the pool: CA verification on, one URI rule for partner users. */
export function mtlsIdentityConfig(pool: CertPool): Record<string, unknown> {
  return {
    mtls: {
      xfcc: { mode: 'sanitize_set' },
      ca: { pem: pool.ca.pem },
      cacheSize: 10_000,
      rules: [
        {
          name: 'partner-users',
          uri: { regex: `spiffe://${TRUST_DOMAIN.replace(/\./g, '\\.')}/org/(?<org>[a-z0-9-]+)/user/(?<user>[a-z0-9-]+)` },
          identity: { subject: '{user}@{org}', kind: 'user', attributes: { org: '{org}' }, groups: ['partners', 'org:{org}'] },
        },
      ],
    },
  };
}
