/** Long-lived parts of the fds capability (admin endpoints, connections); listed in server/capabilities.ts. */
import type { Capability } from '../server/capability.js';

export function fdsCapabilities(): Capability[] {
  return [];
}
