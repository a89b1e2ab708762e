/**
 * The device registry (app-signature registrations), kept in the FDS
 * store's Redis beside the block lists but apart from them: each device has
 * its own hash tag `{d:<id>}` (one Redis Cluster slot per device, not the
 * FDS script's slot), and nothing here runs on a Check's hot path; a
 * signed request carries its key in its credential. A disabled device is an
 * FDS block on the `device` subject, not a field here, so it is refused
 * before any crypto by the same block checks as every other subject.
 */
import type { Redis, Cluster } from 'ioredis';

export interface DeviceRecord {
  readonly id: string;
  /** The device public key (JWK JSON) and its RFC 7638 thumbprint. */
  readonly jwk: string;
  readonly jkt: string;
  readonly platform: string;
  /** Attestation level granted at registration (e.g. `basic`) and which verifier/authority granted it. */
  readonly attestation: string;
  readonly attestedBy: string;
  readonly user: string;
  /** `active` or `revoked` (a revoked device cannot rotate; blocking it for requests is FDS's job). */
  readonly status: 'active' | 'revoked';
  /** Last App-Attest-style counter seen (0 when the verifier has none). */
  readonly counter: number;
  /** Epoch ms. */
  readonly createdAt: number;
  readonly rotatedAt: number;
}

export interface DeviceStore {
  put(record: DeviceRecord, ttlMs: number): Promise<void>;
  get(id: string): Promise<DeviceRecord | undefined>;
  /** Updates status or counter of a known device; false when unknown. */
  update(id: string, change: Partial<Pick<DeviceRecord, 'status' | 'counter' | 'rotatedAt'>>): Promise<boolean>;
  /** Drops expired records (the in-process store; Redis expires its own keys). */
  sweep?(now: number): void;
}

function fromHash(h: Record<string, string>): DeviceRecord | undefined {
  if (!h['id'] || !h['jwk'] || !h['jkt']) return undefined;
  return {
    id: h['id'],
    jwk: h['jwk'],
    jkt: h['jkt'],
    platform: h['platform'] ?? '',
    attestation: h['attestation'] ?? '',
    attestedBy: h['attestedBy'] ?? '',
    user: h['user'] ?? '',
    status: h['status'] === 'revoked' ? 'revoked' : 'active',
    counter: Number(h['counter'] ?? 0) || 0,
    createdAt: Number(h['createdAt'] ?? 0) || 0,
    rotatedAt: Number(h['rotatedAt'] ?? 0) || 0,
  };
}

/** Devices in Redis under `<keyPrefix>{d:<id>}:device` (a hash). */
export function redisDevices(client: Redis | Cluster, keyPrefix: string, onError: (op: string, err: Error) => void): DeviceStore {
  const key = (id: string) => `${keyPrefix}{d:${id}}:device`;
  const run = async <T>(op: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (err) {
      onError(op, err as Error);
      throw err;
    }
  };
  return {
    put: (r, ttlMs) =>
      run('device_put', async () => {
        const k = key(r.id);
        await client.multi().del(k).hset(k, { ...r, counter: String(r.counter), createdAt: String(r.createdAt), rotatedAt: String(r.rotatedAt) }).pexpire(k, ttlMs).exec();
      }),
    get: (id) => run('device_get', async () => fromHash(await client.hgetall(key(id)))),
    update: (id, change) =>
      run('device_update', async () => {
        const k = key(id);
        if ((await client.exists(k)) === 0) return false;
        const fields: Record<string, string> = {};
        for (const [f, v] of Object.entries(change)) fields[f] = String(v);
        await client.hset(k, fields);
        return true;
      }),
  };
}

/** Estimated heap of one device record: its strings plus the objects around them. */
function recordBytes(r: DeviceRecord): number {
  let n = 256;
  for (const v of Object.values(r)) if (typeof v === 'string') n += 16 + 2 * v.length;
  return n;
}

/**
 * The same in one process (store: memory), bounded by `maxBytes`: expired records are swept with the
 * store's other state, and a registration past the bound is refused (a device is not silently forgotten).
 */
export function memoryDevices(now: () => number = Date.now, maxBytes = 32 * 1024 * 1024): DeviceStore {
  const map = new Map<string, { r: DeviceRecord; expiresAt: number; bytes: number }>();
  let bytes = 0;
  const drop = (id: string) => {
    const e = map.get(id);
    if (e === undefined) return;
    map.delete(id);
    bytes -= e.bytes;
  };
  const sweep = (at: number) => {
    for (const [id, e] of map) if (e.expiresAt <= at) drop(id);
  };
  const live = (id: string) => {
    const e = map.get(id);
    if (e && e.expiresAt <= now()) drop(id);
    return e && e.expiresAt > now() ? e : undefined;
  };
  return {
    sweep,
    put: async (r, ttlMs) => {
      drop(r.id);
      const size = recordBytes(r);
      if (bytes + size > maxBytes) sweep(now());
      if (bytes + size > maxBytes) throw new Error(`device store is full (${maxBytes} bytes of live device records); use the Redis store`);
      map.set(r.id, { r, expiresAt: now() + ttlMs, bytes: size });
      bytes += size;
    },
    get: async (id) => live(id)?.r,
    update: async (id, change) => {
      const e = live(id);
      if (!e) return false;
      e.r = { ...e.r, ...change };
      // The changed fields are numbers and a short status: the record's size stays what was charged.
      return true;
    },
  };
}
