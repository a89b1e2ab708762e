/**
 * A RequestView with its maps as plain objects, for deepEqual against another decoder's view: the hot-path
 * decoder's maps have no prototype, proto-loader's toObject maps do.
 */
import type { RequestView } from '../../ext-authz/src/pipeline/request-view.js';

function copy(m: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  // defineProperty: a key named __proto__ must become an own value here too, as in the view.
  for (const k of Object.keys(m)) Object.defineProperty(out, k, { value: m[k], enumerable: true, writable: true, configurable: true });
  return out;
}

export function plainView(view: RequestView): RequestView {
  const peer = (p: RequestView['source']) => ({ ...p, labels: copy(p.labels) });
  return { ...view, headers: copy(view.headers), contextExtensions: copy(view.contextExtensions), source: peer(view.source), destination: peer(view.destination) };
}
