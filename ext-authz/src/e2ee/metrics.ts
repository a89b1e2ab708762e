/** The e2ee counter, registered once per registry (a reload must not register it twice). */
import { Counter, type Registry } from 'prom-client';

const NAME = 'passgate_e2ee_bodies_total';

export function e2eeMetrics(registry: Registry): Counter<'result'> {
  const existing = registry.getSingleMetric(NAME);
  if (existing !== undefined) return existing as Counter<'result'>;
  return new Counter({ name: NAME, help: 'Encrypted bodies by result (decrypted, or the e2ee_* reason they were refused)', labelNames: ['result'], registers: [registry] });
}
