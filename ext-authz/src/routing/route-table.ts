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
import { compilePredicates, compileRouteMatch, type LabelledPredicate, type RoutePredicate } from './route-match.js';
import { shadowStage } from '../pipeline/shadow.js';
import { compileHosts } from './host-match.js';
import { compileGatewaySelector, type SelectableGateway } from './gateway-select.js';
import { deny } from '../pipeline/decision.js';

export interface CompiledRoute extends RouteInfo {
  readonly matches: RoutePredicate;
  readonly stages: readonly Stage[];
  /** The same predicates one by one, for explain (empty: matches everything). */
  readonly predicates?: readonly LabelledPredicate[];
}

/** How explain saw one route: matched, or the first predicate that did not hold. */
export interface RouteTry {
  readonly route: string;
  readonly matched: boolean;
  /** The predicates that held, in order, then the one that failed (if any). */
  readonly held: readonly string[];
  readonly failed?: string;
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
  /** selectGateway with the reason (explain only). */
  explainGateway(req: RequestView): { gateway: CompiledGateway | undefined; by: string };
  /** selectRoute with every route tried (explain only). */
  explainRoute(gateway: CompiledGateway, req: RequestView): { route: CompiledRoute; tried: RouteTry[] };
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
    const stage = bound.definition.create(options, { logger: factory.logger, metrics: factory.metrics, state: bound.state, config, path: `${path}.stages[${i}]` });
    return (options as { shadow?: boolean }).shadow === true ? shadowStage(stage, i) : stage;
  });
}

/** `shadowStages: true` when a stage of the route is shadowed, so the Checker need not look per Check. */
function withShadowFlag<R extends { stages: readonly Stage[] }>(route: R): R & { shadowStages?: true } {
  return route.stages.some((s) => s.shadow === true) ? { ...route, shadowStages: true } : route;
}

const NO_ROUTE_STAGE: Stage = (() => {
  const result = deny(404, 'no_route');
  return { type: 'no-route', run: () => result };
})();

export function compileRouteTable(config: PassgateConfig, factory: Factory): RouteTable {
  const gateways = new Map<string, CompiledGateway>();
  const selectable: SelectableGateway<CompiledGateway>[] = [];

  for (const [name, gw] of Object.entries(config.gateways)) {
    const routes = gw.routes.map((r, i) => withShadowFlag({
      name: r.name,
      matches: compileRouteMatch(r.match),
      predicates: compilePredicates(r.match),
      stages: buildStages(r.stages, `gateways.${name}.routes[${i}]`, config, factory),
      failureMode: r.failureMode ?? gw.failureMode,
      ...(r.shadow === true ? { shadow: true } : {}),
    }));
    const defaultRoute: CompiledRoute = gw.defaultRoute
      ? withShadowFlag({
          name: 'default',
          matches: () => true,
          stages: buildStages(gw.defaultRoute.stages, `gateways.${name}.defaultRoute`, config, factory),
          failureMode: gw.defaultRoute.failureMode ?? gw.failureMode,
          ...(gw.defaultRoute.shadow === true ? { shadow: true } : {}),
        })
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
    explainGateway(req) {
      let by = '';
      const gateway = select({ contextExtensions: req.contextExtensions, destinationPort: req.destination.port, sni: req.sni, host: req.host }, (w) => (by = w));
      return { gateway, by };
    },
    explainRoute(gateway, req) {
      const tried: RouteTry[] = [];
      for (const route of gateway.routes) {
        const held: string[] = [];
        const failed = (route.predicates ?? []).find((p) => (p.test(req) ? (held.push(p.label), false) : true));
        tried.push(failed === undefined ? { route: route.name, matched: true, held } : { route: route.name, matched: false, held, failed: failed.label });
        if (failed === undefined) return { route, tried };
      }
      return { route: gateway.defaultRoute, tried };
    },
  };
}
