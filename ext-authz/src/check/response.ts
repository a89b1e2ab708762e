/**
 * Builds CheckResponses Envoy applies the same way on every version:
 * OK header mutations carry `append: {value: false}` (overwrite; Envoy <= 1.36
 * ignores append_action), denials never set `append`, and the google.rpc code
 * matches the HTTP status.
 */
import type { CheckResponse, HeaderValueOption } from '../proto/types.js';
import type { Denial, DenyStatus } from '../pipeline/decision.js';
import type { HeaderPair } from '../pipeline/context.js';
import { DEFAULT_CHALLENGE } from '../config/schema.js';

/** google.rpc.Code values. */
export const RpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

const RPC_FOR_STATUS: Record<DenyStatus, number> = {
  // Local replies still need a non-OK code, or Envoy would forward the request instead.
  200: RpcCode.UNAUTHENTICATED,
  302: RpcCode.UNAUTHENTICATED,
  400: RpcCode.INVALID_ARGUMENT,
  401: RpcCode.UNAUTHENTICATED,
  403: RpcCode.PERMISSION_DENIED,
  404: RpcCode.NOT_FOUND,
  413: RpcCode.INVALID_ARGUMENT,
  429: RpcCode.RESOURCE_EXHAUSTED,
  431: RpcCode.INVALID_ARGUMENT,
  500: RpcCode.INTERNAL,
  502: RpcCode.UNAVAILABLE,
  503: RpcCode.UNAVAILABLE,
};

const ERROR_FOR_STATUS: Record<DenyStatus, string> = {
  200: 'ok',
  302: 'redirect',
  400: 'bad_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  413: 'payload_too_large',
  429: 'too_many_requests',
  431: 'headers_too_large',
  500: 'internal_error',
  502: 'bad_gateway',
  503: 'unavailable',
};

const OVERWRITE = Object.freeze({ value: false });

function overwrite(name: string, value: string): HeaderValueOption {
  return { header: { key: name, value }, append: OVERWRITE };
}

const APPEND = Object.freeze({ value: true });

/** Set-Cookie is added beside the upstream's own cookies: overwriting would drop them (RFC 6265 §3, one cookie per header). */
function appended(name: string, value: string): HeaderValueOption {
  return { header: { key: name, value }, append: APPEND };
}

function plain(name: string, value: string): HeaderValueOption {
  return { header: { key: name, value } };
}

const OK_STATUS = Object.freeze({ code: RpcCode.OK });
const EMPTY: readonly HeaderValueOption[] = Object.freeze([]) as readonly HeaderValueOption[];

export function okResponse(
  upstream: readonly HeaderPair[],
  headersToRemove: readonly string[],
  responseHeaders: readonly HeaderPair[],
): CheckResponse {
  return {
    status: OK_STATUS,
    ok_response: {
      headers: upstream.length === 0 ? (EMPTY as HeaderValueOption[]) : upstream.map(([k, v]) => overwrite(k, v)),
      headers_to_remove: headersToRemove as string[],
      response_headers_to_add:
        responseHeaders.length === 0 ? (EMPTY as HeaderValueOption[]) : responseHeaders.map(([k, v]) => (k === 'set-cookie' ? appended(k, v) : overwrite(k, v))),
    },
  };
}

/** The client sees `{error, reason, trace_id}` and nothing internal (no detail, no stack). */
export function deniedResponse(denial: Denial, traceId: string, challenge: string): CheckResponse {
  const headers: HeaderValueOption[] = [plain('content-type', 'application/json'), plain('cache-control', 'no-store')];
  if (denial.status === 401) headers.push(plain('www-authenticate', denial.challenge ?? challenge));
  if (denial.headers) for (const [k, v] of denial.headers) headers.push(plain(k, v));
  if (traceId !== '') headers.push(plain('x-trace-id', traceId));
  const body = JSON.stringify({ error: ERROR_FOR_STATUS[denial.status], reason: denial.reason, trace_id: traceId });
  return {
    status: { code: RPC_FOR_STATUS[denial.status], message: denial.reason },
    denied_response: { status: { code: denial.status }, headers, body },
  };
}

const INTERNAL_ERROR: Denial = Object.freeze({ status: 503, reason: 'internal_error' });

/** The answer when the service itself failed (never a gRPC error: Envoy applies this as a deny). */
export function internalErrorResponse(traceId = ''): CheckResponse {
  return deniedResponse(INTERNAL_ERROR, traceId, DEFAULT_CHALLENGE);
}
