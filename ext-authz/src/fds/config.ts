/** The `fds` section of the config (owned by the fds capability). */
import { z } from 'zod';

export const fdsConfigSchema = z.strictObject({}).optional();
export type FdsConfig = z.infer<typeof fdsConfigSchema>;
