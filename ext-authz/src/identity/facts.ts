/**
 * Facts the identity capability leaves for later stages of a Check. The
 * certificate's fingerprint and serial, which FDS reads, are pipeline facts
 * (`pipeline/facts.ts`), since FDS does not `need` this capability.
 */
import { defineFact } from '../pipeline/facts.js';
import type { CertificateFacts } from './certificate.js';

/** The verified client certificate an mtls stage mapped (or failed to map). */
export const CERTIFICATE = defineFact<CertificateFacts>('mtls.certificate');
