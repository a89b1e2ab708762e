/** Host patterns: exact `api.example.com`, suffix wildcard `*.example.com` (one or more labels), or `*`. */
export type HostMatcher = (host: string) => boolean;

export function compileHosts(patterns: readonly string[]): HostMatcher | undefined {
  if (patterns.length === 0) return undefined;
  if (patterns.includes('*')) return () => true;
  const exact = new Set(patterns.filter((p) => !p.startsWith('*.')));
  const suffixes = patterns.filter((p) => p.startsWith('*.')).map((p) => p.slice(1)); // ".example.com"
  if (suffixes.length === 0) return (host) => exact.has(host);
  return (host) => {
    if (exact.has(host)) return true;
    for (const s of suffixes) if (host.length > s.length && host.endsWith(s)) return true;
    return false;
  };
}
