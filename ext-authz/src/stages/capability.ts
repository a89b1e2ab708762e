/** The core capability: stage types that need no state of their own (allow, deny, require-headers). */
import { STATELESS, type Capability } from '../capabilities/capability.js';
import { allowStage } from './allow.js';
import { denyStage } from './deny.js';
import { requireHeadersStage } from './require-headers.js';

export const coreCapability: Capability<undefined> = {
  name: 'core',
  stages: [allowStage, denyStage, requireHeadersStage],
  prepare: () => STATELESS,
};
