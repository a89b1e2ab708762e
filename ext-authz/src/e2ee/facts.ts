/**
 * What the processor learned while decrypting, handed to Check in one
 * request header it sets itself (ext_proc runs before ext_authz):
 *
 *   x-passgate-e2ee: v1.<base64url(JSON facts)>.<base64url(HMAC-SHA256)>
 *
 * The MAC (a secret shared by processor and Check, `e2ee.factsSecretFile`)
 * is what makes it trusted only from the processor: a client copy fails the
 * MAC (and the processor strips any client copy anyway). It is bound to the
 * request's x-request-id and expires after `factsTtlMs`. Check's internal
 * header policy (prefix `x-passgate-`) removes it before the upstream.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const FACTS_HEADER = 'x-passgate-e2ee';

export interface E2eeFacts {
  /** Registered app (`senders[].app`); '' when anonymous. */
  readonly app: string;
  /** Sender key id from the envelope; '' when anonymous. */
  readonly sender: string;
  /** Server key id that decrypted. */
  readonly key: number;
  readonly aead: 'aes-128-gcm' | 'aes-256-gcm';
  /** x-request-id of the request it was made for. */
  readonly rid: string;
  /** Epoch ms after which Check refuses it. */
  readonly exp: number;
}

export function sealFacts(secret: Buffer, facts: E2eeFacts): string {
  const body = Buffer.from(JSON.stringify(facts)).toString('base64url');
  const mac = createHmac('sha256', secret).update('v1.').update(body).digest('base64url');
  return `v1.${body}.${mac}`;
}

export type FactsCheck = { ok: true; facts: E2eeFacts } | { ok: false; reason: 'e2ee_facts_malformed' | 'e2ee_facts_forged' | 'e2ee_facts_expired' | 'e2ee_facts_other_request' };

export function openFacts(secret: Buffer, value: string, requestId: string, now = Date.now()): FactsCheck {
  const parts = value.split('.');
  if (parts.length !== 3 || parts[0] !== 'v1' || parts[1]!.length > 2048) return { ok: false, reason: 'e2ee_facts_malformed' };
  const expected = createHmac('sha256', secret).update('v1.').update(parts[1]!).digest();
  const given = Buffer.from(parts[2]!, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'e2ee_facts_forged' };
  let facts: E2eeFacts;
  try {
    facts = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as E2eeFacts;
  } catch {
    return { ok: false, reason: 'e2ee_facts_malformed' };
  }
  if (typeof facts.exp !== 'number' || facts.exp <= now) return { ok: false, reason: 'e2ee_facts_expired' };
  if (facts.rid !== requestId) return { ok: false, reason: 'e2ee_facts_other_request' };
  return { ok: true, facts };
}
