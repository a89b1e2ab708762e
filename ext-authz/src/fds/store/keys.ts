/**
 * Redis key names of FDS, in one of two layouts:
 * - `per-subject`: every subject has its own hash tag (`<prefix>{user:alice}:b`), so on a Redis Cluster the
 *   keys of many subjects spread over every master; a Check's keys then fall in several slots and the store
 *   sends one script per slot (script-ops.ts).
 * - `single-tag`: every key carries the one tag `{<hashTag>}` (`<prefix>{fds}:b:user:alice`), one slot, one
 *   script per Check: the layout of earlier versions, kept for single-node and Sentinel deployments.
 * In both layouts the CIDR hash and the event channel live under `{<hashTag>}`: the CIDR ranges are loaded
 * whole by one HGETALL into every process (spreading them would make each reload a SCAN of every master),
 * and the channel is not stored data (one name every replica subscribes to).
 * Every key is built here; a new op type names its keys through `key(tag, name)` with its own tag.
 */
import { keySubject } from '../subjects.js';

export type KeyLayoutName = 'per-subject' | 'single-tag';

/** What an oidc key names: a session (and its refresh lock, in the session's slot), a login flow, a back-channel logout index set. */
export type SessionKeyKind = 'session' | 'lock' | 'flow' | 'index';

/** A tag text is cut at the first `}` by Redis: encode it (and `%`, to stay one-to-one) so a subject cannot end the tag. */
function tagText(s: string): string {
  return /[%{}]/.test(s) ? s.replace(/%/g, '%25').replace(/\{/g, '%7B').replace(/\}/g, '%7D') : s;
}

export class KeyLayout {
  /** `<prefix>{<hashTag>}:`, the home of the shared keys (and of every key in single-tag). */
  readonly shared: string;
  readonly cidr: string;
  readonly channel: string;

  constructor(
    readonly prefix: string,
    readonly hashTag: string,
    readonly layout: KeyLayoutName,
  ) {
    this.shared = `${prefix}{${hashTag}}:`;
    this.cidr = `${this.shared}cidr`;
    this.channel = `${this.shared}events`;
  }

  /**
   * The key `name` under hash tag `tag` (`s:<session id>`, `d:<device id>`...): in per-subject the tag is
   * the key's own, in single-tag it becomes part of the name under the shared tag.
   */
  key(tag: string, name: string): string {
    return this.layout === 'per-subject' ? `${this.prefix}{${tagText(tag)}}:${name}` : `${this.shared}${tag}:${name}`;
  }

  private subjectTag(kind: string, subject: string): string {
    return `${kind}:${keySubject(subject)}`;
  }

  block(kind: string, subject: string): string {
    return this.layout === 'per-subject' ? this.key(this.subjectTag(kind, subject), 'b') : `${this.shared}b:${kind}:${keySubject(subject)}`;
  }

  counter(rule: string, kind: string, subject: string): string {
    return this.layout === 'per-subject' ? this.key(this.subjectTag(kind, subject), `c:${rule}`) : `${this.shared}c:${rule}:${kind}:${keySubject(subject)}`;
  }

  /** The counter of a shadowed route or stage (`s:` instead of `c:`): it never fills the real rule's window. */
  shadowCounter(rule: string, kind: string, subject: string): string {
    return this.layout === 'per-subject' ? this.key(this.subjectTag(kind, subject), `s:${rule}`) : `${this.shared}s:${rule}:${kind}:${keySubject(subject)}`;
  }

  offense(kind: string, subject: string): string {
    return this.layout === 'per-subject' ? this.key(this.subjectTag(kind, subject), 'o') : `${this.shared}o:${kind}:${keySubject(subject)}`;
  }

  /** A single-use claim (scoped key from the claim, e.g. `dpop:<gateway>:<thumbprint>:<jti hash>`): its own slot in per-subject. */
  claim(claimKey: string): string {
    return this.layout === 'per-subject' ? this.key(`j:${claimKey}`, 'j') : `${this.shared}j:${claimKey}`;
  }

  /**
   * oidc keys: in per-subject each session (its lock too), flow and index set has its own tag, so a cluster
   * spreads them; in single-tag they live under the shared tag like everything else (one slot, one call).
   */
  session(kind: SessionKeyKind, id: string): string {
    const letter = kind === 'flow' ? 'f' : kind === 'index' ? 'i' : 's';
    const lock = kind === 'lock' ? ':lock' : '';
    return this.layout === 'per-subject' ? `${this.prefix}oidc:{${letter}:${tagText(id)}}${lock}` : `${this.shared}oidc:${letter}:${id}${lock}`;
  }

  /** SCAN MATCH pattern for exact block keys, of one kind or all (glob characters of the prefix escaped). */
  blockPattern(kind?: string): string {
    const p = globEscape(this.prefix);
    if (this.layout === 'per-subject') return `${p}{${kind === undefined ? '' : `${kind}:`}*}:b`;
    return `${globEscape(this.shared)}b:${kind === undefined ? '' : `${kind}:`}*`;
  }
}

/** Escapes SCAN MATCH glob characters in a literal prefix. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/** The configured layout, else per-subject on a cluster (the point of one) and single-tag elsewhere (one node holds every key either way). */
export function keyLayoutOf(settings: { readonly mode: string; readonly keyLayout?: KeyLayoutName | undefined }): KeyLayoutName {
  return settings.keyLayout ?? (settings.mode === 'cluster' ? 'per-subject' : 'single-tag');
}
