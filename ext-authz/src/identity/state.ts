/** What the identity capability prepares for one config, handed to its stages. */
import type { CertificateCache } from './certificate.js';
import type { CompiledMtls } from './profile.js';

export interface IdentityState {
  /** The compiled identity.mtls section; undefined when the config has none. */
  readonly mtls: CompiledMtls | undefined;
  /** One per service: parsed client certificates, shared by every mtls stage. */
  readonly certificates: CertificateCache;
}
