/** Every capability the service runs, in start order (FDS first: others may report to it). */
import type { Capability } from './capability.js';
import { fdsCapabilities } from '../fds/capabilities.js';
import { identityCapabilities } from '../identity/capabilities.js';
import { passportCapabilities } from '../passport/capabilities.js';

export function createCapabilities(): Capability[] {
  return [...fdsCapabilities(), ...identityCapabilities(), ...passportCapabilities()];
}
