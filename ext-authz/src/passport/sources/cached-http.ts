/**
 * A JSON-over-HTTP lookup with everything a hot-path dependency needs: a
 * bounded LRU with TTL, negative caching, one request in flight per key, a
 * circuit breaker, a timeout bounded by the Check's remaining deadline, and a
 * stale-if-error window. Answers synchronously from a fresh cache entry.
 * Never throws or rejects: faults come back as `{kind: 'error'}`.
 */
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type { LRUCache } from 'lru-cache';
import { byteLru, stringBytes } from '../../resilience/byte-lru.js';
import { CircuitBreaker, type BreakerState } from '../../resilience/circuit-breaker.js';

export type LookupResult<T> =
  | { readonly kind: 'found'; readonly value: T; readonly stale: boolean }
  | { readonly kind: 'not_found' }
  | { readonly kind: 'error'; readonly reason: string; readonly detail: string };

/** What `parse` returns for a 200 answer it cannot accept. */
export class InvalidAnswer {
  constructor(readonly detail: string) {}
}

export interface CachedHttpOptions<T> {
  /** For error details: `passport source`, `relay provider "terms"`. */
  readonly name: string;
  readonly maxEntries: number;
  /** Estimated heap bytes the cache may hold (entries are charged by their JSON size). */
  readonly maxBytes?: number;
  readonly ttlMs: number;
  readonly negativeTtlMs: number;
  readonly staleMs: number;
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly failureThreshold: number;
  readonly openMs: number;
  /** Turns a 200 JSON body into a value, or explains why not. */
  readonly parse: (body: unknown) => T | InvalidAnswer;
  /** Whether 404 means "no such subject" (cached) rather than a fault. */
  readonly notFoundOn404: boolean;
  readonly onBreakerChange?: (state: BreakerState) => void;
  readonly onFetch?: (result: 'found' | 'not_found' | 'error' | 'stale' | 'circuit_open') => void;
  /** Clock (epoch ms) for cache freshness and the breaker; tests pass a fake one. */
  readonly now?: () => number;
}

interface Entry<T> {
  readonly result: LookupResult<T>;
  readonly freshUntil: number;
  readonly staleUntil: number;
}

/** Milliseconds kept for answering after a timed-out fetch, so stale facts still beat the Check deadline. */
const RESERVE_MS = 3;

class FetchFault extends Error {
  constructor(
    readonly reason: string,
    detail: string,
  ) {
    super(detail);
  }
}

export class CachedHttpLookup<T> {
  private readonly cache: LRUCache<string, Entry<T>>;
  private readonly inflight = new Map<string, Promise<LookupResult<T>>>();
  readonly breaker: CircuitBreaker;
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  private readonly httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 64 });
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly o: CachedHttpOptions<T>) {
    this.now = o.now ?? Date.now;
    this.cache = byteLru<string, Entry<T>>({ max: o.maxEntries, maxBytes: o.maxBytes ?? 32 * 1024 * 1024, sizeOf: (e) => 64 + stringBytes(JSON.stringify(e.result) ?? '') });
    this.breaker = new CircuitBreaker(o.failureThreshold, o.openMs, o.onBreakerChange);
  }

  /**
   * Cached answer (sync) or a fetch bounded by `remainingMs`. The URL is
   * built by `urlOf(arg)` only when a request really goes out.
   */
  get<A>(key: string, remainingMs: number, urlOf: (arg: A) => string, arg: A): LookupResult<T> | Promise<LookupResult<T>> {
    const now = this.now();
    const entry = this.cache.get(key);
    if (entry !== undefined && now < entry.freshUntil) return entry.result;
    const pending = this.inflight.get(key);
    if (pending !== undefined) return pending;
    const budget = Math.min(this.o.timeoutMs, remainingMs - RESERVE_MS);
    if (budget <= 0) {
      return this.staleOr(entry, now, { kind: 'error', reason: 'deadline', detail: `${this.o.name}: no time left in the Check deadline` });
    }
    if (!this.breaker.allow(now)) {
      this.o.onFetch?.('circuit_open');
      return this.staleOr(entry, now, { kind: 'error', reason: 'circuit_open', detail: `${this.o.name}: circuit open after repeated failures` });
    }
    const p = this.fetch(urlOf(arg), budget).then(
      (result) => {
        this.breaker.success();
        this.o.onFetch?.(result.kind === 'found' ? 'found' : 'not_found');
        const t = this.now();
        const ttl = result.kind === 'found' ? this.o.ttlMs : this.o.negativeTtlMs;
        if (ttl > 0) this.cache.set(key, { result, freshUntil: t + ttl, staleUntil: t + ttl + this.o.staleMs });
        else this.cache.delete(key);
        return result as LookupResult<T>;
      },
      (err: unknown) => {
        this.breaker.failure(this.now());
        this.o.onFetch?.('error');
        const fault = err instanceof FetchFault ? err : new FetchFault('error', (err as Error).message);
        return this.staleOr(this.cache.get(key), this.now(), { kind: 'error', reason: fault.reason, detail: `${this.o.name}: ${fault.message}` });
      },
    );
    this.inflight.set(key, p);
    void p.finally(() => this.inflight.delete(key));
    return p;
  }

  private staleOr(entry: Entry<T> | undefined, now: number, error: LookupResult<T>): LookupResult<T> {
    if (entry !== undefined && now < entry.staleUntil) {
      this.o.onFetch?.('stale');
      return entry.result.kind === 'found' ? { kind: 'found', value: entry.result.value, stale: true } : entry.result;
    }
    return error;
  }

  private fetch(url: string, timeoutMs: number): Promise<LookupResult<T>> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new FetchFault('closed', 'lookup closed (shutting down)'));
      const isHttps = url.startsWith('https:');
      const req = (isHttps ? httpsRequest : httpRequest)(url, {
        method: 'GET',
        agent: isHttps ? this.httpsAgent : this.httpAgent,
        headers: { accept: 'application/json', ...this.o.headers },
      });
      const timer = setTimeout(() => req.destroy(new FetchFault('timeout', `no answer within ${timeoutMs} ms`)), timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err instanceof FetchFault ? err : new FetchFault('unreachable', err.message));
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status === 404 && this.o.notFoundOn404) {
          res.resume();
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ kind: 'not_found' });
          });
          return;
        }
        if (status !== 200) {
          res.resume();
          clearTimeout(timer);
          return reject(new FetchFault('bad_status', `answered HTTP ${status}`));
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > this.o.maxResponseBytes) req.destroy(new FetchFault('too_large', `answer over ${this.o.maxResponseBytes} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new FetchFault('invalid_answer', 'answered with a body that is not JSON'));
          }
          const value = this.o.parse(body);
          if (value instanceof InvalidAnswer) return reject(new FetchFault('invalid_answer', value.detail));
          resolve({ kind: 'found', value, stale: false });
        });
        res.on('error', (err) => {
          clearTimeout(timer);
          reject(err instanceof FetchFault ? err : new FetchFault('unreachable', err.message));
        });
      });
      req.end();
    });
  }

  close(): void {
    this.closed = true;
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
