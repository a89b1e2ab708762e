/**
 * Compiles a route's predicates into one closure. All predicates must hold
 * (host AND path AND method AND every header rule); an absent predicate
 * matches everything.
 */
import type { RequestView } from '../pipeline/request-view.js';
import type { RouteMatchConfig } from '../config/schema.js';
import { compileHosts } from './host-match.js';
import { normalizePath } from '../pipeline/path-policy.js';

/**
 * Why an exact or prefix path in the config can never equal a request's path, which is compared after the
 * path policy normalized it (undefined when it can): the config must be written in that same form.
 */
export function pathPredicateProblem(p: string): string | undefined {
  const n = normalizePath(p);
  if (n.ok && n.path === p) return undefined;
  if (n.ok) return `"${p}" can never match: request paths are compared in their normalized form "${n.path}"; write that`;
  let suggestion: string | undefined;
  try {
    const encoded = normalizePath(encodeURI(p));
    if (encoded.ok) suggestion = encoded.path;
  } catch {
    // encodeURI refuses lone surrogates: no suggestion.
  }
  return `"${p}" can never match: a request path spelled so is refused (${n.reason}: ${n.detail})${suggestion === undefined ? '' : `; write "${suggestion}"`}`;
}

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

/** One predicate of a route with what it tests, for `passgate explain`. */
export interface LabelledPredicate {
  readonly label: string;
  readonly test: RoutePredicate;
}

function headerLabel(rule: NonNullable<RouteMatchConfig['headers']>[number]): string {
  if (rule.exact !== undefined) return `header ${rule.name} = ${JSON.stringify(rule.exact)}`;
  if (rule.prefix !== undefined) return `header ${rule.name} starts with ${JSON.stringify(rule.prefix)}`;
  if (rule.regex !== undefined) return `header ${rule.name} ~ /${rule.regex}/`;
  return rule.present === false ? `header ${rule.name} absent` : `header ${rule.name} present`;
}

function pathLabel(path: NonNullable<RouteMatchConfig['path']>): string {
  const ci = path.caseInsensitive === true ? ' (case-insensitive)' : '';
  if ('exact' in path) return `path = ${path.exact}${ci}`;
  if ('prefix' in path) return `path prefix ${path.prefix}${ci}`;
  return `path ~ /${path.regex}/${ci}`;
}

/** The route's predicates, cheapest first: a method Set lookup rejects most non-matching routes before any string work. */
export function compilePredicates(match: RouteMatchConfig): LabelledPredicate[] {
  const predicates: LabelledPredicate[] = [];
  if (match.methods) {
    const methods = new Set<string>(match.methods);
    predicates.push({ label: `method in ${match.methods.join(',')}`, test: (req) => methods.has(req.method) });
  }
  const hosts = compileHosts(match.hosts ?? []);
  if (hosts) predicates.push({ label: `host in ${match.hosts!.join(',')}`, test: (req) => hosts(req.host) });
  const path = pathPredicate(match.path);
  if (path) predicates.push({ label: pathLabel(match.path!), test: path });
  for (const h of match.headers ?? []) predicates.push({ label: headerLabel(h), test: headerPredicate(h) });
  return predicates;
}

export function compileRouteMatch(match: RouteMatchConfig): RoutePredicate {
  return combine(compilePredicates(match).map((p) => p.test));
}

function combine(predicates: readonly RoutePredicate[]): RoutePredicate {
  if (predicates.length === 0) return () => true;
  if (predicates.length === 1) return predicates[0]!;
  return (req) => {
    for (const p of predicates) if (!p(req)) return false;
    return true;
  };
}
