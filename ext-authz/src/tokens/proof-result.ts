/** What a proof verifier answers: a verified proof with the jti to burn, or a precise failure. */

export interface VerifiedProof {
  /** Replay-cache scope: the key thumbprint (DPoP) or client name (request JWT). */
  readonly scope: string;
  readonly jti: string;
  /** Epoch ms after which the proof is refused anyway (the replay entry may end then). */
  readonly expiresAt: number;
  readonly claims: Readonly<Record<string, unknown>>;
  /** DPoP: the key thumbprint (for cnf.jkt); request JWT: the client name. */
  readonly keyId: string;
}

export interface ProofFailure {
  readonly ok: false;
  readonly reason: string;
  readonly detail: string;
  /** RFC 9449 error code for the WWW-Authenticate challenge. */
  readonly error: 'invalid_dpop_proof' | 'use_dpop_nonce' | 'invalid_token' | 'invalid_request';
  readonly unavailable?: boolean;
}

export type ProofResult = { readonly ok: true; readonly proof: VerifiedProof } | ProofFailure;

export function proofFailure(reason: string, detail: string, error: ProofFailure['error'] = 'invalid_dpop_proof'): ProofFailure {
  return { ok: false, reason, detail, error };
}
