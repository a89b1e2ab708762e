/** What the tokens capability prepares for one config, handed to the jwt and proof stages. */
import type { FdsState } from '../fds/state.js';
import type { TokensRuntime } from './runtime.js';

export interface TokensState {
  /** Issuer and client key sets, the proof key cache, the nonce mint and the verified-token cache. */
  readonly runtime: TokensRuntime;
  /** The FDS store carries the proofs' single-use claims in the Check's one round trip. */
  readonly fds: FdsState;
}
