/** The oauth2 capability's prepared state, handed to every oauth2 stage. */
import type { OAuth2ClientConfig, OAuth2Config } from './config.js';
import type { AuthServer } from './auth-server.js';
import type { GrantCache } from './cache.js';
import type { Revocation, RevocationBus } from './revocation.js';

export interface RevokeResult {
  /** Cache entries this replica dropped. */
  readonly dropped: number;
  /** Replicas the message reached through Redis (this one included when subscribed); undefined without Redis. */
  readonly replicas: number | undefined;
}

export interface OAuth2State {
  readonly config: OAuth2Config | undefined;
  readonly servers: ReadonlyMap<string, AuthServer>;
  readonly cache: GrantCache;
  readonly clients: ReadonlyMap<string, OAuth2ClientConfig>;
  readonly unknownClients: 'allow' | 'deny';
  readonly bus: RevocationBus | undefined;
  /** Applies locally at once, then publishes to every replica. */
  revoke(r: Revocation): Promise<RevokeResult>;
}

/** Applies one revocation to a cache (used for local and received messages alike). */
export function applyRevocation(cache: GrantCache, r: Revocation): number {
  if (r.kind === 'token') return cache.revokeToken(r.hash);
  if (r.kind === 'client') return cache.revokeClient(r.id);
  cache.restoreClient(r.id);
  return 0;
}
