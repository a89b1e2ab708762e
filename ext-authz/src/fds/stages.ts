/** Stage types contributed by the fds capability; listed in stages/catalog.ts. */
import type { StageDefinition } from '../stages/stage.js';
import { fdsStage } from './fds-stage.js';

export const fdsStages: readonly StageDefinition<any>[] = [fdsStage];
