/**
 * Passgate as a library: start the ext_authz service from code, validate
 * configs, and add capabilities of your own (stage types, a config section,
 * admin routes): pass them to `compose([...])` to validate a config with
 * them and to `PassgateService.start({ capabilities: [...] })` to run them.
 * Services that only read Passports import `passgate/passport` instead.
 */
export { PassgateService, type ServiceOptions } from './server/service.js';
export { loadConfigFile, parseConfigText, validateConfig, DEFAULT_CONFIG_PATH } from './config/load.js';
export { ConfigError } from './config/errors.js';
export type { PassgateConfig, ConfigSections } from './config/schema.js';
export { compose, defaultComposition, CAPABILITIES, type Composition } from './capabilities/index.js';
export { STATELESS, type Capability, type Prepared, type PrepareContext } from './capabilities/capability.js';
export { sendJson, type AdminHandler, type AdminRoute } from './capabilities/admin-http.js';
export type { Stage, StageDefinition, StageFactoryContext } from './stages/stage.js';
export { CheckContext, type Identity } from './pipeline/context.js';
export { ALLOW, CONTINUE, deny, fail, type Decision, type Denial, type StageResult } from './pipeline/decision.js';
export { loadAuthorizationService } from './proto/load.js';
