/** What the app-signature capability prepares for one config, handed to its stage. */
import type { FdsState } from '../fds/state.js';
import type { CredentialAuthority } from './credential.js';

export interface AppSignatureState {
  /** Signs device credentials at registration and verifies them on every request (with its cache). */
  readonly authority: CredentialAuthority;
  /** The FDS engine: device blocks, counters, and the nonces' single-use claims in the Check's one round trip. */
  readonly fds: FdsState;
}
