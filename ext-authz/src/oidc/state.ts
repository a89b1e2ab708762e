/** What the oidc capability prepares for one config, handed to its stages. */
import type { OidcProvider } from './provider.js';
import type { SessionManager } from './sessions.js';

export interface OidcState {
  readonly providers: ReadonlyMap<string, OidcProvider>;
  /** Undefined when the config has no `oidc` section. */
  readonly sessions: SessionManager | undefined;
}
