/**
 * The tokens capability: the jwt and proof stages and the `tokens` section.
 * It needs fds because a proof's jti is claimed in the FDS store, inside the
 * one script a Check already runs. Prepare builds a new runtime that takes
 * over the serving one's key sets and caches, so a reload refetches no JWKS
 * and a rejected reload changes nothing.
 */
import type { Capability, Prepared } from '../capabilities/capability.js';
import { fdsCapability } from '../fds/capability.js';
import { tokensConfigSchema } from './config.js';
import { jwtStage } from './jwt-stage.js';
import { proofStage } from './proof-stage.js';
import { TokensRuntime } from './runtime.js';
import type { TokensState } from './state.js';

export const tokensCapability: Capability<TokensState> = {
  name: 'tokens',
  needs: ['fds'],
  section: { key: 'tokens', schema: tokensConfigSchema },
  stages: [jwtStage, proofStage],
  prepare(_config, ctx): Prepared<TokensState> {
    return { state: { runtime: new TokensRuntime(ctx.previous?.runtime), fds: ctx.dependency(fdsCapability) } };
  },
};
