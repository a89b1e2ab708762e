/** Long-lived parts of the identity capability (admin endpoints, connections); listed in server/capabilities.ts. */
import type { Capability } from '../server/capability.js';

export function identityCapabilities(): Capability[] {
  return [];
}
