/**
 * The compiled, immutable form of a config: gateways, their routes with
 * predicates and stage instances, and the gateway selector. A reload builds
 * a new table and swaps one reference, so a Check always sees one table.
 */
import type { RequestView } from '../check/request-view.js';
import type { FailureMode, GatewayConfig, PassgateConfig } from '../config/schema.js';
import type { Stage, StageFactoryContext } from '../stages/stage.js';
import { stageDefinition } from '../stages/catalog.js';
import { compileRouteMatch, type RoutePredicate } from './route-match.js';
import { compileHosts } from './host-match.js';
import { compileGatewaySelector, type SelectableGateway } from './gateway-select.js';
import { deny } from '../pipeline/decision.js';

export interface CompiledRoute {
  readonly name: string;
  readonly matches: RoutePredicate;
  readonly stages: readonly Stage[];
  readonly failureMode: FailureMode;
}

export interface CompiledGateway {
  readonly name: string;
  readonly kind: GatewayConfig['kind'];
  /** Whether x-forwarded-client-cert may be believed on this gateway. */
  readonly mtls: boolean;
  readonly challenge: string;
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

type Factory = Omit<StageFactoryContext, 'path' | 'config'>;

function buildStages(
  stages: ReadonlyArray<{ type: string }>,
  path: string,
  config: PassgateConfig,
  factory: Factory,
): Stage[] {
  return stages.map((options, i) => {
    const def = stageDefinition(options.type);
    // The schema already rejected unknown types; this guards programmatic configs.
    if (!def) throw new Error(`${path}.stages[${i}].type: unknown stage type "${options.type}"`);
    return def.create(options, { ...factory, config, path: `${path}.stages[${i}]` });
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
      mtls: gw.mtls ?? gw.kind === 'secure',
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
