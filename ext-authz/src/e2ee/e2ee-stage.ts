/**
 * The `e2ee` stage (in a Check chain, after the processor ran): reads the
 * facts header the processor set while decrypting, verifies its MAC, request
 * binding and expiry, and makes the app the request's identity (or, when an
 * earlier stage already set one, records the app beside it), so the Passport
 * stage issues one Passport for the decrypted request.
 *
 * `require: true` (default) refuses requests that did not come through the
 * processor: plaintext where ciphertext is required.
 */
import { z } from 'zod';
import { CONTINUE, deny, type StageResult } from '../pipeline/decision.js';
import type { StageDefinition } from '../stages/stage.js';
import { FACTS_HEADER, openFacts, type E2eeFacts } from './facts.js';
import { defineFact } from '../pipeline/facts.js';
import type { E2eeState } from './state.js';
import type { Outcome } from '../pipeline/context.js';

const schema = z.strictObject({
  type: z.literal('e2ee'),
  /** Deny (400 `e2ee_required`) requests whose body was not decrypted by the processor. */
  require: z.boolean().default(true),
  /** Also refuse anonymous envelopes on this route even when `e2ee.allowAnonymous` is on. */
  requireSender: z.boolean().default(true),
});

/** Where later stages find what the processor decrypted and authenticated (`ctx.get(E2EE_FACTS)`). */
export const E2EE_FACTS = defineFact<E2eeFacts>('e2ee');

/**
 * The FDS outcomes of a body the processor refused (declared below with the
 * stage type, which is where FDS looks them up): every refusal counts
 * `e2ee_refused` for the source IP; a replayed envelope, which opened and so
 * authenticated its sender, also counts `e2ee_replayed` for that app key
 * (device). A failure naming a sender it could not prove is not counted
 * against that sender: anyone can write a sender id.
 */
export function refusalOutcomes(reason: string, ip: string, sender: string): Outcome[] {
  const out: Outcome[] = ip === '' ? [] : [{ event: 'e2ee_refused', subjectKind: 'ip', subject: ip }];
  if (reason === 'e2ee_replayed') {
    if (ip !== '') out.push({ event: 'e2ee_replayed', subjectKind: 'ip', subject: ip });
    if (sender !== '') out.push({ event: 'e2ee_replayed', subjectKind: 'device', subject: sender });
  }
  return out;
}

export const e2eeStage: StageDefinition<z.infer<typeof schema>, E2eeState> = {
  type: 'e2ee',
  schema,
  events: [
    { event: 'auth_failure', kinds: ['ip'] },
    // Reported by the ext_proc processor (no Check runs for a refused body): refusalOutcomes.
    { event: 'e2ee_refused', kinds: ['ip'] },
    { event: 'e2ee_replayed', kinds: ['ip', 'device'] },
  ],
  description: 'Trust the facts the e2ee processor found while decrypting the body (app identity, key id); deny requests that were not decrypted.',
  validate(_options, config) {
    return config.e2ee === undefined ? ['stage e2ee needs the top-level e2ee section (keys, senders)'] : [];
  },
  create(options, { state }) {
    const required = deny(400, 'e2ee_required', 'the body was not decrypted by the e2ee processor');
    const anonymous = deny(401, 'e2ee_sender_required', 'anonymous envelope on a route that requires an app key');
    const denials = new Map<string, StageResult>();
    const denialFor = (reason: string): StageResult => {
      let d = denials.get(reason);
      if (d === undefined) denials.set(reason, (d = deny(401, reason, 'the e2ee facts header did not verify')));
      return d;
    };
    return {
      type: 'e2ee',
      run(ctx): StageResult {
        const value = ctx.request.headers[FACTS_HEADER];
        if (value === undefined || value === '') return options.require ? required : CONTINUE;
        const checked = openFacts(state.factsSecret, value, ctx.request.headers['x-request-id'] ?? '');
        if (!checked.ok) {
          ctx.report('auth_failure', 'ip', ctx.request.source.address);
          return denialFor(checked.reason);
        }
        const facts: E2eeFacts = checked.facts;
        if (facts.app === '' && options.requireSender) return anonymous;
        ctx.set(E2EE_FACTS, facts);
        ctx.audit['e2ee_key'] = facts.key;
        if (facts.sender !== '') ctx.audit['e2ee_sender'] = facts.sender;
        if (ctx.identity === undefined && facts.app !== '') {
          ctx.identity = {
            subject: `app:${facts.app}`,
            kind: 'service',
            source: 'e2ee',
            attributes: { app: facts.app, e2ee_sender: facts.sender },
            groups: [],
            deviceId: facts.sender,
          };
        }
        return CONTINUE;
      },
    };
  },
};
