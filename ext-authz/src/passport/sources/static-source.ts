/**
 * A user directory in the config: for the embedded default, development and
 * tests. Answers are precomputed at config load, so a lookup is a map read.
 */
import type { Identity } from '../../pipeline/context.js';
import type { StaticSourceConfig } from '../config.js';
import type { LookupResult } from './cached-http.js';
import { factsFingerprint, type PassportSource, type SourceFacts } from './source.js';

const NOT_FOUND: LookupResult<SourceFacts> = Object.freeze({ kind: 'not_found' });

export class StaticSource implements PassportSource {
  readonly type = 'static' as const;
  /** subject → (device id or '' → answer) */
  private readonly answers = new Map<string, Map<string, LookupResult<SourceFacts>>>();

  constructor(config: StaticSourceConfig) {
    const fetchedAt = Math.floor(Date.now() / 1000);
    for (const [subject, u] of Object.entries(config.users)) {
      const user = { id: u.id ?? subject, roles: u.roles, scopes: u.scopes };
      const byDevice = new Map<string, LookupResult<SourceFacts>>();
      const found = (device: SourceFacts['device']): LookupResult<SourceFacts> =>
        Object.freeze({ kind: 'found', stale: false, value: { user, ...(device ? { device } : {}), fingerprint: factsFingerprint(user, device), fetchedAt } });
      byDevice.set('', found(undefined));
      for (const [id, d] of Object.entries(u.devices)) {
        byDevice.set(id, found({ id, type: d.type, ...(d.os ? { os: d.os } : {}), ...(d.appVersion ? { appVersion: d.appVersion } : {}) }));
      }
      this.answers.set(subject, byDevice);
    }
  }

  lookup(identity: Identity): LookupResult<SourceFacts> {
    const byDevice = this.answers.get(identity.subject);
    if (byDevice === undefined) return NOT_FOUND;
    // An unlisted device still gets a Passport; the passport stage fills a minimal device block.
    return byDevice.get(identity.deviceId ?? '') ?? byDevice.get('')!;
  }
}
