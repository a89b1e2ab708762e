/**
 * The outcome vocabulary every stage speaks. Kept as plain objects so a
 * stage can return a shared constant on the hot path (no allocation).
 */

/**
 * HTTP statuses a deny may carry; each maps to one google.rpc code. 200 and
 * 302 are local replies, not refusals: a redirect to log in or back to the
 * page (oidc), an endpoint answered by a stage itself (back-channel logout);
 * Envoy sends any denied_response status as given.
 */
export type DenyStatus = 200 | 302 | 400 | 401 | 403 | 404 | 413 | 429 | 431 | 500 | 502 | 503;

export interface Denial {
  readonly status: DenyStatus;
  /** Short machine-readable reason shown to the client and in metrics (`blocked`, `missing_header`). */
  readonly reason: string;
  /** Internal detail for the audit log only; never sent to the client. */
  readonly detail?: string;
  /** Extra response headers for the local reply (e.g. `retry-after`). */
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  /** `WWW-Authenticate` challenge for 401s; defaults to the gateway's. */
  readonly challenge?: string;
}

export type StageResult =
  | { readonly kind: 'continue' }
  | { readonly kind: 'allow' }
  | { readonly kind: 'deny'; readonly denial: Denial }
  /** The stage could not decide (dependency down, timeout): the route's failure mode applies. */
  | { readonly kind: 'fail'; readonly reason: string; readonly detail?: string };

export const CONTINUE: StageResult = Object.freeze({ kind: 'continue' });
export const ALLOW: StageResult = Object.freeze({ kind: 'allow' });

export function deny(status: DenyStatus, reason: string, detail?: string, extra?: Partial<Denial>): StageResult {
  return { kind: 'deny', denial: { ...extra, status, reason, ...(detail === undefined ? {} : { detail }) } };
}

export type FailResult = Extract<StageResult, { kind: 'fail' }>;

export function fail(reason: string, detail?: string): FailResult {
  return detail === undefined ? { kind: 'fail', reason } : { kind: 'fail', reason, detail };
}

/** What the pipeline decided, after failure modes are applied. */
export type Decision =
  | { readonly kind: 'allow'; readonly degraded: boolean; readonly reason: string }
  | { readonly kind: 'deny'; readonly denial: Denial };
