/**
 * Revocation pushed to every replica (the ory/oathkeeper#1082 class: each
 * pod caching alone keeps a revoked token alive until its TTL). A revocation
 * is published on one Redis pub/sub channel; every replica subscribed to it
 * drops the cache entries and keeps a tombstone. The replica that revokes
 * applies it locally first, so its own answer never waits for Redis.
 *
 * Messages carry token hashes and client ids, never tokens.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

export type Revocation = { readonly kind: 'token'; readonly hash: string } | { readonly kind: 'client'; readonly id: string } | { readonly kind: 'restore'; readonly id: string };

const HASH = /^[0-9a-f]{64}$/;

export function parseRevocation(text: string): Revocation | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const m = v as Record<string, unknown>;
  if (m['kind'] === 'token' && typeof m['hash'] === 'string' && HASH.test(m['hash'])) return { kind: 'token', hash: m['hash'] };
  if ((m['kind'] === 'client' || m['kind'] === 'restore') && typeof m['id'] === 'string' && m['id'] !== '' && m['id'].length <= 256) return { kind: m['kind'], id: m['id'] };
  return undefined;
}

export class RevocationBus {
  private constructor(
    readonly url: string,
    readonly channel: string,
    private readonly pub: Redis,
    private readonly sub: Redis,
    private handler: (r: Revocation) => void,
  ) {}

  /** Connects both sides and subscribes; rejects (naming the key) when Redis cannot be reached. */
  static async open(url: string, channel: string, logger: Logger, handler: (r: Revocation) => void): Promise<RevocationBus> {
    const { Redis } = await import('ioredis');
    const options = { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true } as const;
    const pub = new Redis(url, options);
    const sub = new Redis(url, options);
    for (const r of [pub, sub]) r.on('error', (err: Error) => logger.warn({ err: err.message }, 'oauth2 revocation redis error'));
    try {
      await Promise.all([pub.connect(), sub.connect()]);
      await sub.subscribe(channel);
    } catch (err) {
      pub.disconnect();
      sub.disconnect();
      throw new Error(`oauth2.revocation.redisUrl: cannot subscribe to ${channel}: ${(err as Error).message}`);
    }
    const bus = new RevocationBus(url, channel, pub, sub, handler);
    sub.on('message', (ch: string, text: string) => {
      if (ch !== channel) return;
      const r = parseRevocation(text);
      if (r === undefined) logger.warn({ channel }, 'oauth2 revocation: ignored a malformed message');
      else bus.handler(r);
    });
    return bus;
  }

  /** The state that takes this bus over points it at its own cache. */
  retarget(handler: (r: Revocation) => void): void {
    this.handler = handler;
  }

  /** Number of replicas that received it (Redis PUBLISH's answer). */
  async publish(r: Revocation): Promise<number> {
    return this.pub.publish(this.channel, JSON.stringify(r));
  }

  close(): void {
    this.pub.disconnect();
    this.sub.disconnect();
  }
}
