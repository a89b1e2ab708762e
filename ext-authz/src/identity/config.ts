/** The `identity` section of the config (owned by the identity capability). */
import { z } from 'zod';

export const identityConfigSchema = z.strictObject({}).optional();
export type IdentityConfig = z.infer<typeof identityConfigSchema>;
