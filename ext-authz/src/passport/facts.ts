/** Facts the passport capability's stages pass on: relay results for the Passport, the issued claims for later stages. */
import { defineFact } from '../pipeline/facts.js';
import type { PassportClaims } from './model.js';

export interface RelayAttribute {
  readonly claims: Record<string, string | number | boolean>;
  readonly missing: string[];
  /** Cache-key fragment describing claims + missing. */
  key: string;
}

/** What the relay stage leaves for the passport stage. */
export const RELAY = defineFact<RelayAttribute>('passport.relay');
/** The claims of the Passport this Check carries upstream (for authorization rules after it). */
export const PASSPORT_CLAIMS = defineFact<PassportClaims>('passport');
