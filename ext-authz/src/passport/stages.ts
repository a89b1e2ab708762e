/** Stage types contributed by the passport capability; listed in stages/catalog.ts. */
import type { StageDefinition } from '../stages/stage.js';
import { passportStage } from './passport-stage.js';
import { relayStage } from './relay-stage.js';

export const passportStages: readonly StageDefinition<any>[] = [passportStage, relayStage];
