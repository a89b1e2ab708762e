/** Reading the jwt stage's access token fact; stripping headers. */
import type { CheckContext } from '../pipeline/context.js';
import { ACCESS_TOKEN, type AccessTokenFact } from './facts.js';

export type { AccessTokenFact };

export function accessToken(ctx: CheckContext): AccessTokenFact | undefined {
  return ctx.get(ACCESS_TOKEN);
}

/** Adds a header to the removal list (lazily allocated: most routes strip nothing). */
export function stripHeader(ctx: CheckContext, name: string): void {
  (ctx.removeUpstream ??= []).push(name);
}
