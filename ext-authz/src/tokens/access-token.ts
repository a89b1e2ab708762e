/** What the jwt stage leaves for the proof stage: the presented token and its DPoP binding. */
import type { CheckContext } from '../pipeline/context.js';

export const ACCESS_TOKEN = 'tokens.access';

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

export function accessToken(ctx: CheckContext): AccessTokenFact | undefined {
  return ctx.attributes.get(ACCESS_TOKEN) as AccessTokenFact | undefined;
}

/** Adds a header to the removal list (lazily allocated: most routes strip nothing). */
export function stripHeader(ctx: CheckContext, name: string): void {
  (ctx.removeUpstream ??= []).push(name);
}
