/** Time and claim checks shared by access tokens and proofs (pure: the caller passes `now`). */

export function numericDate(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** `exp`/`nbf` with a bounded skew; a message when they fail, undefined when fine. */
export function checkTimes(payload: Readonly<Record<string, unknown>>, nowSec: number, skewSec: number, requireExp: boolean): { reason: string; detail: string } | undefined {
  const exp = numericDate(payload['exp']);
  if (exp === undefined) {
    if (requireExp || payload['exp'] !== undefined) return { reason: 'missing_exp', detail: 'token has no numeric exp' };
  } else if (nowSec - skewSec >= exp) return { reason: 'token_expired', detail: `token expired at ${exp}, now ${nowSec}` };
  const nbf = payload['nbf'];
  if (nbf !== undefined) {
    const n = numericDate(nbf);
    if (n === undefined) return { reason: 'malformed_payload', detail: 'nbf is not a number' };
    if (nowSec + skewSec < n) return { reason: 'token_not_yet_valid', detail: `token valid from ${n}, now ${nowSec}` };
  }
  return undefined;
}

/** Whether `aud` (string or array) names one of `accepted`. */
export function audienceMatches(aud: unknown, accepted: readonly string[]): boolean {
  if (typeof aud === 'string') return accepted.includes(aud);
  if (Array.isArray(aud)) return aud.some((a) => typeof a === 'string' && accepted.includes(a));
  return false;
}

/** A claim equals one of `values`, or (array claim) contains one. */
export function claimMatches(v: unknown, values: readonly (string | number | boolean)[]): boolean {
  if (Array.isArray(v)) return v.some((x) => values.includes(x as never));
  return values.includes(v as never);
}
