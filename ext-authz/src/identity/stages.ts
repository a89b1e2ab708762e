/** Stage types contributed by the identity capability; listed in stages/catalog.ts. */
import type { StageDefinition } from '../stages/stage.js';
import { mtlsStage } from './mtls-stage.js';
import { authorizeStage } from './authorize-stage.js';

export const identityStages: readonly StageDefinition<any>[] = [mtlsStage, authorizeStage];
