/** Claims → Identity with the issuer's (or client's) mapping; undefined when the subject claim is missing. */
import type { Identity } from '../pipeline/context.js';
import type { IdentityMapping } from './config.js';

const SCOPE_PREFIX = 'scope:';

function words(v: unknown): string[] {
  if (typeof v === 'string') return v.split(' ').filter((s) => s !== '');
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string' && s !== '');
  return [];
}

export function identityFromClaims(claims: Readonly<Record<string, unknown>>, m: IdentityMapping, source: string): Identity | undefined {
  const subject = claims[m.subject];
  if (typeof subject !== 'string' || subject === '' || subject.length > 512) return undefined;
  // `scope:` names the token's scopes among the groups: a provider group spelled that way would pass for a
  // scope the client was never granted, so it is not taken.
  const groups = m.groups ? words(claims[m.groups]).filter((g) => !g.startsWith(SCOPE_PREFIX)) : [];
  for (const s of words(claims[m.scopes])) groups.push(`${SCOPE_PREFIX}${s}`);
  const attributes: Record<string, string> = {};
  for (const name in m.attributes) {
    const v = claims[m.attributes[name]!];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') attributes[name] = String(v);
  }
  const device = m.deviceId ? claims[m.deviceId] : undefined;
  return {
    subject,
    kind: m.kind,
    source,
    attributes,
    groups,
    ...(typeof device === 'string' && device !== '' ? { deviceId: device } : {}),
  };
}
