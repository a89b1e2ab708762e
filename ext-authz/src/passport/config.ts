/** The `passport` section of the config (owned by the passport capability). */
import { z } from 'zod';

export const passportConfigSchema = z.strictObject({}).optional();
export type PassportConfig = z.infer<typeof passportConfigSchema>;
