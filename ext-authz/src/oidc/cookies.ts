/**
 * Reading our cookies out of a Cookie header (RFC 6265 §5.4 form:
 * `a=1; b=2`), writing Set-Cookie values, and the header upstream sees
 * without them.
 */

/** Where the name of the cookie-pair in `header[from, to)` starts: after the optional whitespace (SP, HTAB) after `;`. */
function nameStart(header: string, from: number, to: number): number {
  let i = from;
  while (i < to && (header.charCodeAt(i) === 32 || header.charCodeAt(i) === 9)) i++;
  return i;
}

/**
 * The value of cookie `name` (exact name), or undefined; the first such cookie when several are sent.
 * The header is read pair by pair, as `withoutOurCookies` reads it: our name inside another cookie's
 * value (`theme=dark __Host-passgate=...`, which a sibling subdomain can set) is that cookie's value,
 * never our cookie.
 */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined || header === '') return undefined;
  const n = header.length;
  let from = 0;
  while (from < n) {
    let to = header.indexOf(';', from);
    if (to < 0) to = n;
    const at = nameStart(header, from, to);
    const eq = at + name.length;
    if (eq < to && header.charCodeAt(eq) === 61 /* = */ && header.startsWith(name, at)) return header.slice(eq + 1, to).trim();
    from = to + 1;
  }
  return undefined;
}

/** The Cookie header without the session cookie and the login-flow cookies; undefined when nothing else is left. */
export function withoutOurCookies(header: string, name: string, flowPrefix: string): string | undefined {
  const kept: string[] = [];
  const n = header.length;
  let from = 0;
  while (from < n) {
    let to = header.indexOf(';', from);
    if (to < 0) to = n;
    const pair = header.slice(nameStart(header, from, to), to).trim();
    from = to + 1;
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const pairName = eq < 0 ? pair : pair.slice(0, eq);
    if (pairName === name || pairName.startsWith(flowPrefix)) continue;
    kept.push(pair);
  }
  return kept.length === 0 ? undefined : kept.join('; ');
}

/** Whether the header carries any of our cookies (the common upstream-bound check, no allocation). */
export function hasCookiePrefix(header: string | undefined, prefix: string): boolean {
  return header !== undefined && header.includes(prefix);
}

/** A `__Host-` cookie: Secure, Path=/, no Domain (the prefix's rules), HttpOnly, SameSite=Lax (sent on top-level navigations back from the provider). */
export function setCookie(name: string, value: string, maxAgeSeconds: number): string {
  return `${name}=${value}; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}; Path=/; Secure; HttpOnly; SameSite=Lax`;
}

export function clearCookie(name: string): string {
  return `${name}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax`;
}
