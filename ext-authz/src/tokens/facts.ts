/** Facts the tokens capability's stages pass on: the jwt stage's verified access token for the proof stage. */
import { defineFact } from '../pipeline/facts.js';

/** What the jwt stage leaves for the proof stage: the presented token and its DPoP binding. */
export interface AccessTokenFact {
  readonly token: string;
  /** `bearer` or `dpop`, the Authorization scheme it came with (`bearer` for headers/cookies). */
  readonly scheme: 'bearer' | 'dpop';
  /** cnf.jkt when the token is bound to a DPoP key. */
  readonly jkt: string | undefined;
  readonly issuer: string;
  /** Set by the proof stage once a DPoP proof for this token verified. */
  bindingVerified: boolean;
}

export const ACCESS_TOKEN = defineFact<AccessTokenFact>('tokens.access');
