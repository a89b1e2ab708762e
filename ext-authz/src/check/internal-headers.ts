/**
 * Decides which request headers Envoy must strip so no client can smuggle in
 * a header only the gateway may set.
 *
 * Envoy applies `headers_to_remove` AFTER the `headers` it sets (ext_authz
 * filter onComplete), so a header we set in this answer must NOT be listed
 * for removal or our own value would be deleted. Setting with append=false
 * already replaces every client copy of it.
 */
import type { HeaderPair } from '../pipeline/context.js';

export class InternalHeaderPolicy {
  /** Always listed (unless set by us): a removal of an absent header costs Envoy nothing. */
  private readonly names: readonly string[];
  private readonly nameSet: ReadonlySet<string>;
  private readonly prefixes: readonly string[];

  constructor(names: readonly string[], prefixes: readonly string[]) {
    this.names = [...new Set(names.map((n) => n.toLowerCase()))];
    this.nameSet = new Set(this.names);
    this.prefixes = prefixes.map((p) => p.toLowerCase());
  }

  isInternal(name: string): boolean {
    if (this.nameSet.has(name)) return true;
    for (const p of this.prefixes) if (name.startsWith(p)) return true;
    return false;
  }

  /**
   * The removal list for one answer. Returns the shared static list when the
   * request carries no prefixed internal header and we set none of the names
   * (the common case, no allocation).
   */
  headersToRemove(
    requestHeaders: Readonly<Record<string, string>>,
    set: readonly HeaderPair[],
    extra: string | undefined,
  ): readonly string[] {
    let found: string[] | undefined;
    if (this.prefixes.length > 0) {
      for (const key in requestHeaders) {
        if (this.nameSet.has(key)) continue;
        for (const p of this.prefixes) {
          if (key.startsWith(p)) {
            (found ??= []).push(key);
            break;
          }
        }
      }
    }
    if (found === undefined && set.length === 0 && extra === undefined) return this.names;
    const out: string[] = [];
    const isSet = (name: string) => {
      for (const [k] of set) if (k === name) return true;
      return false;
    };
    for (const n of this.names) if (!isSet(n)) out.push(n);
    if (found) for (const n of found) if (!isSet(n)) out.push(n);
    if (extra !== undefined && !isSet(extra)) out.push(extra);
    return out;
  }
}
