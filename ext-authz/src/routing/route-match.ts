/**
 * Compiles a route's predicates into one closure. All predicates must hold
 * (host AND path AND method AND every header rule); an absent predicate
 * matches everything.
 */
import type { RequestView } from '../pipeline/request-view.js';
import type { RouteMatchConfig } from '../config/schema.js';
import { compileHosts } from './host-match.js';

export type RoutePredicate = (req: RequestView) => boolean;

function pathPredicate(path: RouteMatchConfig['path']): RoutePredicate | undefined {
  if (path === undefined) return undefined;
  // req.path is already normalized (routing/path-policy.ts); case folding is the route's opt-in.
  const fold = path.caseInsensitive === true;
  const p = fold ? (req: RequestView) => req.path.toLowerCase() : (req: RequestView) => req.path;
  if ('exact' in path) {
    const exact = fold ? path.exact.toLowerCase() : path.exact;
    return (req) => p(req) === exact;
  }
  if ('prefix' in path) {
    const prefix = fold ? path.prefix.toLowerCase() : path.prefix;
    // "/api" matches "/api" and "/api/x" but not "/apix": segment-aware, like Istio's prefix on a path boundary.
    if (prefix.endsWith('/')) return (req) => p(req).startsWith(prefix);
    const withSlash = `${prefix}/`;
    return (req) => {
      const v = p(req);
      return v === prefix || v.startsWith(withSlash);
    };
  }
  const re = new RegExp(path.regex, fold ? 'i' : '');
  return (req) => re.test(req.path);
}

function headerPredicate(rule: NonNullable<RouteMatchConfig['headers']>[number]): RoutePredicate {
  const name = rule.name;
  if (rule.exact !== undefined) {
    const exact = rule.exact;
    return (req) => req.headers[name] === exact;
  }
  if (rule.prefix !== undefined) {
    const prefix = rule.prefix;
    return (req) => req.headers[name]?.startsWith(prefix) === true;
  }
  if (rule.regex !== undefined) {
    const re = new RegExp(rule.regex);
    return (req) => {
      const v = req.headers[name];
      return v !== undefined && re.test(v);
    };
  }
  if (rule.present === false) return (req) => req.headers[name] === undefined;
  return (req) => req.headers[name] !== undefined;
}

export function compileRouteMatch(match: RouteMatchConfig): RoutePredicate {
  const predicates: RoutePredicate[] = [];
  // Cheapest first: a method Set lookup rejects most non-matching routes before any string work.
  if (match.methods) {
    const methods = new Set<string>(match.methods);
    predicates.push((req) => methods.has(req.method));
  }
  const hosts = compileHosts(match.hosts ?? []);
  if (hosts) predicates.push((req) => hosts(req.host));
  const path = pathPredicate(match.path);
  if (path) predicates.push(path);
  for (const h of match.headers ?? []) predicates.push(headerPredicate(h));

  if (predicates.length === 0) return () => true;
  if (predicates.length === 1) return predicates[0]!;
  return (req) => {
    for (const p of predicates) if (!p(req)) return false;
    return true;
  };
}
