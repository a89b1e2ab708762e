/**
 * The compiled, immutable form of a config: gateways, their routes with
 * predicates and stage instances, and the gateway selector. A reload builds
 * a new table and swaps one reference, so a Check always sees one table.
 */
import type { RequestView } from '../pipeline/request-view.js';
import type { FailureMode, GatewayConfig, PassgateConfig } from '../config/schema.js';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';
import type { Stage, StageDefinition } from '../stages/stage.js';
import type { GatewayInfo, RouteInfo } from '../pipeline/context.js';
import { compileRouteMatch, type RoutePredicate } from './route-match.js';
import { compileHosts } from './host-match.js';
import { compileGatewaySelector, type SelectableGateway } from './gateway-select.js';
import { deny } from '../pipeline/decision.js';

export interface CompiledRoute extends RouteInfo {
  readonly matches: RoutePredicate;
  readonly stages: readonly Stage[];
}

export interface CompiledGateway extends GatewayInfo {
  readonly routes: readonly CompiledRoute[];
  readonly defaultRoute: CompiledRoute;
}

export interface RouteTable {
  readonly config: PassgateConfig;
  readonly gateways: ReadonlyMap<string, CompiledGateway>;
  /** Picks the gateway for a request; undefined when nothing selects one. */
  selectGateway(req: RequestView): CompiledGateway | undefined;
  /** First matching route, else the gateway's default route. */
  selectRoute(gateway: CompiledGateway, req: RequestView): CompiledRoute;
}

/** A stage type with the prepared state of the capability that declares it. */
export interface BoundStageType {
  readonly definition: StageDefinition<any, any>;
  readonly state: unknown;
}

export interface Factory {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The stage types of the composition, bound to the states prepared for this config. */
  readonly stageType: (type: string) => BoundStageType | undefined;
}

function buildStages(
  stages: ReadonlyArray<{ type: string }>,
  path: string,
  config: PassgateConfig,
  factory: Factory,
): Stage[] {
  return stages.map((options, i) => {
    const bound = factory.stageType(options.type);
    // The schema already rejected unknown types; this guards programmatic configs.
    if (!bound) throw new Error(`${path}.stages[${i}].type: unknown stage type "${options.type}"`);
    return bound.definition.create(options, { logger: factory.logger, metrics: factory.metrics, state: bound.state, config, path: `${path}.stages[${i}]` });
  });
}

const NO_ROUTE_STAGE: Stage = (() => {
  const result = deny(404, 'no_route');
  return { type: 'no-route', run: () => result };
})();

export function compileRouteTable(config: PassgateConfig, factory: Factory): RouteTable {
  const gateways = new Map<string, CompiledGateway>();
  const selectable: SelectableGateway<CompiledGateway>[] = [];

  for (const [name, gw] of Object.entries(config.gateways)) {
    const routes = gw.routes.map((r, i) => ({
      name: r.name,
      matches: compileRouteMatch(r.match),
      stages: buildStages(r.stages, `gateways.${name}.routes[${i}]`, config, factory),
      failureMode: r.failureMode ?? gw.failureMode,
    }));
    const defaultRoute: CompiledRoute = gw.defaultRoute
      ? {
          name: 'default',
          matches: () => true,
          stages: buildStages(gw.defaultRoute.stages, `gateways.${name}.defaultRoute`, config, factory),
          failureMode: gw.defaultRoute.failureMode ?? gw.failureMode,
        }
      : { name: 'default', matches: () => true, stages: [NO_ROUTE_STAGE], failureMode: gw.failureMode };
    const compiled: CompiledGateway = {
      name,
      kind: gw.kind,
      trustXfcc: gw.trustXfcc ?? gw.kind === 'secure',
      challenge: gw.challenge,
      routes,
      defaultRoute,
    };
    gateways.set(name, compiled);
    selectable.push({ gateway: compiled, hosts: compileHosts(gw.select.hosts), ports: gw.select.ports });
  }
  const fallback = config.defaultGateway === undefined ? undefined : gateways.get(config.defaultGateway);
  const select = compileGatewaySelector(gateways, selectable, fallback);

  return {
    config,
    gateways,
    selectGateway(req) {
      // Trust order in routing/gateway-select.ts: what the client cannot choose comes first.
      return select({ contextExtensions: req.contextExtensions, destinationPort: req.destination.port, sni: req.sni, host: req.host });
    },
    selectRoute(gateway, req) {
      for (const route of gateway.routes) if (route.matches(req)) return route;
      return gateway.defaultRoute;
    },
  };
}
