/**
 * Upgrade from the single-tag layout: moves the keys an earlier version wrote under `{<hashTag>}` (exact
 * blocks, offense levels, counters, single-use claims) to their per-subject names, with their remaining
 * TTL, so blocks, escalation and replay protection survive the switch. The CIDR hash stays where it is (both
 * layouts keep it under the one tag). A key already present under its new name is kept (it is newer).
 *
 * Every old key is in the one slot of `{<hashTag>}`, i.e. on one master: SCAN that node (in the background at
 * start). A marker key is set after a complete pass, so later starts cost one GET.
 */
import { Cluster, type Redis } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import type { KeyLayout } from './keys.js';

/** The per-subject name of an old single-tag key (`b:<kind>:<subject>`, ...), or undefined for keys not moved. */
export function perSubjectName(keys: KeyLayout, oldKey: string): string | undefined {
  const rest = oldKey.slice(keys.shared.length);
  const at = (s: string, n: number): [string[], string] | undefined => {
    const parts: string[] = [];
    let from = 0;
    for (let i = 0; i < n; i++) {
      const c = s.indexOf(':', from);
      if (c < 0) return undefined;
      parts.push(s.slice(from, c));
      from = c + 1;
    }
    return [parts, s.slice(from)];
  };
  if (rest.startsWith('b:') || rest.startsWith('o:')) {
    const p = at(rest, 2);
    if (!p || p[1] === '') return undefined;
    return rest[0] === 'b' ? keys.block(p[0][1]!, p[1]) : keys.offense(p[0][1]!, p[1]);
  }
  if (rest.startsWith('c:')) {
    const p = at(rest, 3);
    return p && p[1] !== '' ? keys.counter(p[0][1]!, p[0][2]!, p[1]) : undefined;
  }
  if (rest.startsWith('j:') && rest.length > 2) return keys.claim(rest.slice(2));
  return undefined;
}

/** Moves what it finds; resolves to the number of keys moved. */
export async function migrateFromSingleTag(client: Redis | Cluster, keys: KeyLayout): Promise<number> {
  const marker = `${keys.shared}layout`;
  if ((await client.get(marker)) === 'per-subject') return 0;
  const node = client instanceof Cluster ? ownerOf(client, keys.shared) : client;
  if (node === undefined) throw new Error(`no master serves the slot of ${keys.shared}`);
  let moved = 0;
  let cursor = '0';
  const match = `${keys.shared.replace(/[*?[\]\\]/g, '\\$&')}[bocj]:*`;
  do {
    const [next, found] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    for (const oldKey of found) {
      const name = perSubjectName(keys, oldKey);
      if (name === undefined) continue;
      const [dump, pttl] = await Promise.all([node.dumpBuffer(oldKey), node.pttl(oldKey)]);
      if (dump === null || pttl === -2) continue;
      try {
        await client.restore(name, pttl > 0 ? pttl : 0, dump);
      } catch (err) {
        if (!(err as Error).message.startsWith('BUSYKEY')) throw err;
      }
      await node.del(oldKey);
      moved++;
    }
  } while (cursor !== '0');
  await client.set(marker, 'per-subject');
  return moved;
}

function ownerOf(cluster: Cluster, key: string): Redis | undefined {
  const slot = calculateSlot(key.replace(/:$/, ''));
  const master = (cluster.slots[slot] ?? [])[0];
  return master === undefined ? undefined : cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === master);
}
