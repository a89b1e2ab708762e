/**
 * Reads the partner's credential from the request: a bearer access token
 * (RFC 6750 §2.1), HTTP Basic client credentials (RFC 6749 §2.3.1: id and
 * secret are form-urlencoded before base64), or configured id/secret headers.
 * Strict on purpose: one spelling per credential, so nothing can be smuggled
 * through an encoding (no lenient base64, no non-UTF-8, no second header
 * joined with a comma by the proxy).
 */

/** Upper bounds that keep a hostile header from costing us work. */
export const MAX_AUTHORIZATION = 8192;
export const MAX_ID = 256;
export const MAX_SECRET = 1024;
export const MAX_TOKEN = 8192;

export type Credential =
  | { readonly kind: 'bearer'; readonly token: string }
  | { readonly kind: 'client'; readonly id: string; readonly secret: string; readonly via: 'basic' | 'headers' }
  | { readonly kind: 'none' }
  | { readonly kind: 'malformed'; readonly error: string };

const NONE: Credential = Object.freeze({ kind: 'none' });
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const CONTROL = /[\u0000-\u001f\u007f]/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(error: string): Credential {
  return { kind: 'malformed', error };
}

/** application/x-www-form-urlencoded decoding of one id or secret; undefined when it is not valid. */
function formDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

function parseBasic(b64: string): Credential {
  if (b64 === '' || !BASE64.test(b64)) return malformed('Basic credentials are not canonical base64');
  let text: string;
  try {
    text = utf8.decode(Buffer.from(b64, 'base64'));
  } catch {
    return malformed('Basic credentials are not UTF-8');
  }
  const colon = text.indexOf(':');
  if (colon === -1) return malformed('Basic credentials have no ":" between client id and secret');
  const id = formDecode(text.slice(0, colon));
  const secret = formDecode(text.slice(colon + 1));
  if (id === undefined || secret === undefined) return malformed('Basic client id or secret is not valid form-urlencoding');
  return client(id, secret, 'basic');
}

function client(id: string, secret: string, via: 'basic' | 'headers'): Credential {
  if (id === '' || secret === '') return malformed('empty client id or secret');
  if (id.length > MAX_ID || secret.length > MAX_SECRET) return malformed(`client id (max ${MAX_ID}) or secret (max ${MAX_SECRET}) is too long`);
  if (CONTROL.test(id) || CONTROL.test(secret)) return malformed('client id or secret holds control characters');
  return { kind: 'client', id, secret, via };
}

export interface CredentialSources {
  readonly bearer: boolean;
  readonly basic: boolean;
  /** Configured header names for the id and secret (lowercase), when that form is accepted. */
  readonly idHeader: string | undefined;
  readonly secretHeader: string | undefined;
}

/** Envoy joins repeated headers with "," — neither a token68 nor canonical base64 holds one. */
export function readCredential(headers: Readonly<Record<string, string>>, src: CredentialSources): Credential {
  if (src.idHeader !== undefined && src.secretHeader !== undefined) {
    const id = headers[src.idHeader];
    const secret = headers[src.secretHeader];
    if (id !== undefined || secret !== undefined) {
      if (id === undefined || secret === undefined) return malformed(`both ${src.idHeader} and ${src.secretHeader} are needed`);
      if (id.includes(',') || secret.includes(',')) return malformed('client id or secret header appears more than once');
      return client(id, secret, 'headers');
    }
  }
  const auth = headers['authorization'];
  if (auth === undefined || auth === '') return NONE;
  if (auth.length > MAX_AUTHORIZATION) return malformed(`Authorization header longer than ${MAX_AUTHORIZATION} bytes`);
  if (auth.includes(',')) return malformed('more than one Authorization header');
  const space = auth.indexOf(' ');
  if (space === -1) return malformed('Authorization header has no scheme and credentials');
  const scheme = auth.slice(0, space).toLowerCase();
  const value = auth.slice(space + 1).trim();
  if (scheme === 'bearer') {
    if (!src.bearer) return malformed('bearer tokens are not accepted on this route');
    if (value.length > MAX_TOKEN || !TOKEN68.test(value)) return malformed('bearer token is not a token68 (RFC 6750 §2.1)');
    return { kind: 'bearer', token: value };
  }
  if (scheme === 'basic') {
    if (!src.basic) return malformed('Basic client credentials are not accepted on this route');
    return parseBasic(value);
  }
  return malformed(`Authorization scheme "${scheme.slice(0, 20)}" is not accepted (use Bearer${src.basic ? ' or Basic' : ''})`);
}
