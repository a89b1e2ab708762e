/** The denial of a blocked subject (one frozen object, so stages can tell it from other 403s by identity). */
export const BLOCKED_DENIAL = Object.freeze({ status: 403 as const, reason: 'blocked' });
