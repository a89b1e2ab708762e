/**
 * The request URL a proof must name, normalised as RFC 9449 §4.3 asks
 * (https://www.rfc-editor.org/rfc/rfc9449#section-4.3): no query, no
 * fragment, RFC 3986 syntax- and scheme-based normalisation (lowercase
 * scheme and host, default port dropped, empty path is "/", percent-encoded
 * unreserved characters decoded, hex digits uppercased, dot segments removed).
 */
const UNRESERVED = /%([0-9A-Fa-f]{2})/g;

function normalisePercent(path: string): string {
  return path.replace(UNRESERVED, (m, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${hex.toUpperCase()}`;
  });
}

/** Normalised `scheme://host[:port]/path`, or undefined when `url` is not an absolute http(s) URL. */
export function normaliseHtu(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return undefined;
  if (u.username !== '' || u.password !== '') return undefined;
  // URL already lowercased scheme and host, dropped the default port and removed dot segments.
  return `${u.protocol}//${u.host}${normalisePercent(u.pathname || '/')}`;
}

/** The URL this request was made to, from what the proxy saw (scheme, :authority, path). */
export function requestHtu(scheme: string, authority: string, path: string): string | undefined {
  if (authority === '' || path === '' || path[0] !== '/') return undefined;
  return normaliseHtu(`${scheme === '' ? 'https' : scheme}://${authority}${path}`);
}
