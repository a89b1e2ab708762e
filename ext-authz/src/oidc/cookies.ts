/**
 * Reading our cookies out of a Cookie header (RFC 6265 §5.4 form:
 * `a=1; b=2`), writing Set-Cookie values, and the header upstream sees
 * without them.
 */

/** The value of cookie `name` (exact name), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined || header === '') return undefined;
  let at = 0;
  while (at < header.length) {
    const found = header.indexOf(name, at);
    if (found < 0) return undefined;
    const end = found + name.length;
    const startOk = found === 0 || header.charCodeAt(found - 1) === 32 || header.charCodeAt(found - 1) === 59;
    if (startOk && header.charCodeAt(end) === 61 /* = */) {
      const stop = header.indexOf(';', end + 1);
      return header.slice(end + 1, stop < 0 ? header.length : stop).trim();
    }
    at = end;
  }
  return undefined;
}

/** The Cookie header without the session cookie and the login-flow cookies; undefined when nothing else is left. */
export function withoutOurCookies(header: string, name: string, flowPrefix: string): string | undefined {
  const kept: string[] = [];
  for (const part of header.split(';')) {
    const p = part.trim();
    if (p === '') continue;
    const eq = p.indexOf('=');
    const n = eq < 0 ? p : p.slice(0, eq);
    if (n === name || n.startsWith(flowPrefix)) continue;
    kept.push(p);
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
