/**
 * Every mix entry must get the decision its scenario states, or a benchmark's
 * numbers mean nothing. Used by the runner before it measures, and by the
 * tests so a scenario cannot rot between benchmark runs.
 */
import { createAuthorizationClient } from '../../ext-authz/src/proto/load.js';
import type { CheckResponse } from '../../ext-authz/src/proto/types.js';
import * as grpc from '@grpc/grpc-js';
import type { MixEntry } from './scenarios.js';

export async function verifyMix(port: number, mix: readonly MixEntry[]): Promise<string[]> {
  const client = createAuthorizationClient(`127.0.0.1:${port}`);
  const problems: string[] = [];
  try {
    for (const entry of mix) {
      const res = await new Promise<CheckResponse>((ok, fail) =>
        client.Check(entry.request, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, r) => (err ? fail(err) : ok(r ?? {}))),
      );
      const code = res.status?.code ?? 0;
      const got = code === 0 ? 'allow' : `deny ${res.denied_response?.status?.code ?? '?'} ${res.status?.message ?? ''}`;
      const want = 'allow' in entry.expect ? 'allow' : `deny ${entry.expect.deny} ${entry.expect.reason}`;
      if (got !== want) problems.push(`"${entry.name}": expected ${want}, got ${got}`);
    }
  } catch (err) {
    problems.push(`Check call failed: ${(err as Error).message}`);
  } finally {
    client.close();
  }
  return problems;
}
