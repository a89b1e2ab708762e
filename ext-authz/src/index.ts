/**
 * Passgate as a library: start the ext_authz service from code, validate
 * configs, and add stage types of your own before loading a config.
 * Services that only read Passports import `passgate/passport` instead.
 */
export { PassgateService, type ServiceOptions } from './server/service.js';
export { ConfigError, loadConfigFile, parseConfigText, validateConfig, DEFAULT_CONFIG_PATH } from './config/load.js';
export type { PassgateConfig } from './config/schema.js';
export { registerStageDefinition, stageDefinitions } from './stages/catalog.js';
export type { Stage, StageDefinition, StageFactoryContext } from './stages/stage.js';
export { CheckContext, type Identity } from './pipeline/context.js';
export { ALLOW, CONTINUE, deny, fail, type Decision, type Denial, type StageResult } from './pipeline/decision.js';
export { loadAuthorizationService } from './proto/load.js';
