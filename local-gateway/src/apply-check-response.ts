/**
 * Envoy's ext_authz filter applying a Check answer (Envoy <= 1.36 semantics,
 * the ones the contract says Passgate targets):
 *  - OK: `headers` with append false/unset overwrite (or add), `append: true`
 *    appends to an existing header only (a missing one is not added);
 *    then `headers_to_remove` (pseudo-headers and `host` are never removed);
 *    `response_headers_to_add` go on the client's response;
 *    `query_parameters_to_set` / `_remove` rewrite `:path`.
 *  - Denied (status.code != 0): HTTP status from denied_response.status.code
 *    (403 when unset), its body, its headers replacing same-name headers of
 *    the local reply.
 *  - A failed call (gRPC error, timeout, no connection): failure_mode_allow
 *    lets the request go on, else a local reply with status_on_error.
 */
import type { CheckResponse, HeaderValueOption } from '../../ext-authz/src/proto/types.js';

export type HeaderList = Array<[string, string]>;

export interface ExtAuthzSettings {
  /** Let requests through when the call fails (Envoy failure_mode_allow). */
  readonly failureModeAllow: boolean;
  /** Status of the local reply when the call fails (Envoy default 403). */
  readonly statusOnError: number;
  /** Envoy failure_mode_allow_header_add: mark fail-open requests with x-envoy-auth-failure-mode-allowed. */
  readonly failureModeAllowHeaderAdd?: boolean;
}

export type Outcome =
  | { readonly kind: 'ok'; readonly responseHeadersToAdd: HeaderList; readonly responseHeadersToSet: HeaderList }
  | { readonly kind: 'denied'; readonly status: number; readonly headers: HeaderList; readonly body: string }
  | { readonly kind: 'error'; readonly status: number; readonly headers: HeaderList; readonly body: string };

/** Envoy refuses to let ext_authz touch these (HeaderUtility::isModifiableHeader). */
export function isModifiable(name: string): boolean {
  return name.length > 0 && !name.startsWith(':') && name !== 'host';
}

function findIndex(headers: HeaderList, name: string): number {
  for (let i = 0; i < headers.length; i++) if (headers[i]![0] === name) return i;
  return -1;
}

function removeAll(headers: HeaderList, name: string): void {
  for (let i = headers.length - 1; i >= 0; i--) if (headers[i]![0] === name) headers.splice(i, 1);
}

/** setCopy: every copy removed, one entry added. */
export function setHeader(headers: HeaderList, name: string, value: string): void {
  const at = findIndex(headers, name);
  removeAll(headers, name);
  if (at < 0 || at > headers.length) headers.push([name, value]);
  else headers.splice(at, 0, [name, value]);
}

/** appendCopy: joins onto the existing value with ","; Envoy <= 1.36 only calls it when the header exists. */
function appendToExisting(headers: HeaderList, name: string, value: string): void {
  const at = findIndex(headers, name);
  if (at < 0) return;
  const cur = headers[at]![1];
  headers[at] = [name, cur === '' ? value : `${cur},${value}`];
}

function keyValue(h: HeaderValueOption): [string, string] | null {
  const key = h.header?.key;
  if (!key) return null;
  const value = h.header?.value ?? (h.header?.raw_value ? Buffer.from(h.header.raw_value).toString('latin1') : '');
  return [key.toLowerCase(), value];
}

/**
 * Applies a Check answer. For OK the request `headers` list is mutated in
 * place (incl. `:path` for query parameter changes); the result says what to
 * put on the response. `response === null` means the call failed.
 */
export function applyCheckResponse(response: CheckResponse | null, headers: HeaderList, settings: ExtAuthzSettings): Outcome {
  if (response === null) {
    if (settings.failureModeAllow) {
      if (settings.failureModeAllowHeaderAdd) setHeader(headers, 'x-envoy-auth-failure-mode-allowed', 'true');
      return { kind: 'ok', responseHeadersToAdd: [], responseHeadersToSet: [] };
    }
    return { kind: 'error', status: settings.statusOnError, headers: [], body: '' };
  }
  const code = response.status?.code ?? 0;
  if (code !== 0) return denied(response);
  const ok = response.ok_response;
  if (!ok) return { kind: 'ok', responseHeadersToAdd: [], responseHeadersToSet: [] };
  for (const h of ok.headers ?? []) {
    const kv = keyValue(h);
    if (!kv || !isModifiable(kv[0])) continue;
    if (h.append?.value === true) appendToExisting(headers, kv[0], kv[1]);
    else setHeader(headers, kv[0], kv[1]);
  }
  // Removals come after the sets, as in Envoy: a header we just set and also list is gone.
  for (const name of ok.headers_to_remove ?? []) {
    const n = name.toLowerCase();
    if (isModifiable(n)) removeAll(headers, n);
  }
  if ((ok.query_parameters_to_set?.length ?? 0) > 0 || (ok.query_parameters_to_remove?.length ?? 0) > 0) {
    const at = findIndex(headers, ':path');
    if (at >= 0) headers[at] = [':path', rewriteQuery(headers[at]![1], ok.query_parameters_to_set ?? [], ok.query_parameters_to_remove ?? [])];
  }
  const add: HeaderList = [];
  const set: HeaderList = [];
  for (const h of ok.response_headers_to_add ?? []) {
    const kv = keyValue(h);
    if (!kv || !isModifiable(kv[0])) continue;
    (h.append?.value === true ? add : set).push(kv);
  }
  return { kind: 'ok', responseHeadersToAdd: add, responseHeadersToSet: set };
}

function denied(response: CheckResponse): Outcome {
  const d = response.denied_response;
  const code = d?.status?.code ?? 0;
  const status = code > 0 ? code : 403;
  const body = d?.body ?? '';
  const headers: HeaderList = [];
  if (body.length > 0) headers.push(['content-type', 'text/plain']);
  // Each name the service sends replaces the local reply's own copies; several entries of one name all stay.
  const replaced = new Set<string>();
  for (const h of d?.headers ?? []) {
    const kv = keyValue(h);
    if (!kv || kv[0].startsWith(':')) continue;
    if (!replaced.has(kv[0]) && h.append?.value !== true) {
      removeAll(headers, kv[0]);
      replaced.add(kv[0]);
    }
    headers.push(kv);
  }
  return { kind: 'denied', status, headers, body };
}

function decodeComponent(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** Rewrites the query of a `:path`: set (overwrite or add, in order) then remove, keys matched decoded. */
export function rewriteQuery(path: string, set: ReadonlyArray<{ key?: string; value?: string }>, remove: readonly string[]): string {
  const q = path.indexOf('?');
  const base = q < 0 ? path : path.slice(0, q);
  const query = q < 0 ? '' : path.slice(q + 1);
  const params: Array<[string, string]> = [];
  if (query !== '') {
    for (const part of query.split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      params.push(eq < 0 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)]);
    }
  }
  for (const p of set) {
    if (!p.key) continue;
    const enc: [string, string] = [encodeURIComponent(p.key), encodeURIComponent(p.value ?? '')];
    const at = params.findIndex(([k]) => decodeComponent(k) === p.key);
    if (at < 0) params.push(enc);
    else {
      params[at] = enc;
      for (let i = params.length - 1; i > at; i--) if (decodeComponent(params[i]![0]) === p.key) params.splice(i, 1);
    }
  }
  const drop = new Set(remove);
  const kept = params.filter(([k]) => !drop.has(decodeComponent(k)));
  return kept.length === 0 ? base : `${base}?${kept.map(([k, v]) => `${k}=${v}`).join('&')}`;
}
