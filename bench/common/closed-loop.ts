/** Closed-loop throughput: `inFlight` callers, each sending the next Check as soon as the last one answered, for `ms`. */
import type { CheckRequest, CheckResponse } from '../../ext-authz/src/proto/types.js';

export interface CheckCaller {
  check(req: CheckRequest): Promise<CheckResponse>;
}

/** Prints one row (`label`, Checks/s, and how many were denied when any were) and returns the rate. */
export async function closedLoop(svc: CheckCaller, label: string, make: () => CheckRequest, ms: number, inFlight = 32, width = 34): Promise<number> {
  let done = 0;
  let denied = 0;
  const end = Date.now() + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < end) {
        const r = await svc.check(make());
        if (!r.ok_response) denied++;
        done++;
      }
    }),
  );
  const rps = done / (ms / 1000);
  console.log(`  ${label.padEnd(width)} ${rps.toFixed(0).padStart(7)} Checks/s${denied ? ` (${denied} denied!)` : ''}`);
  return rps;
}
