/** What the e2ee capability prepares for one config: for the processor, the e2ee stage and the key endpoint. */
import type { ProcessorState } from './processor.js';
import type { ServerKey } from './keys.js';
import type { FdsStore } from '../fds/store/store.js';

export interface E2eeState extends ProcessorState {
  readonly keys: readonly ServerKey[];
  /** The `application/ohttp-keys` body served on the admin port. */
  keyConfigs(now?: number): Buffer;
  /** Single-use claims of `enc` when there is no FDS engine: an FDS memory store of this process. */
  readonly localClaims?: FdsStore;
}
