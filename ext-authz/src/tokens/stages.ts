/** Stage types contributed by the tokens capability; listed in stages/catalog.ts. */
import type { StageDefinition } from '../stages/stage.js';
import { jwtStage } from './jwt-stage.js';
import { proofStage } from './proof-stage.js';

export const tokensStages: readonly StageDefinition<any>[] = [jwtStage, proofStage];
