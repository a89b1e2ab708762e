/** What the fds capability prepares for one config, handed to its stages and admin API. */
import type { FdsEngine } from './engine.js';

export interface FdsState {
  /** Undefined when the config has neither an `fds` section nor an fds stage. */
  readonly engine: FdsEngine | undefined;
}

