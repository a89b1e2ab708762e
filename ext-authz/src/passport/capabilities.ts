/** Long-lived parts of the passport capability (admin endpoints, connections); listed in server/capabilities.ts. */
import type { Capability } from '../server/capability.js';

export function passportCapabilities(): Capability[] {
  return [];
}
