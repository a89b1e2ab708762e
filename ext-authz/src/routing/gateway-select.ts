/**
 * Which gateway profile judges a request. The order puts first what the
 * client cannot choose:
 * 1. `context_extensions.gateway`, set per Envoy route by the operator (an
 *    unknown name selects nothing: 403 `unknown_gateway`);
 * 2. the destination port the request arrived on: a port bound by
 *    `select.ports` picks its profile, whatever the Host says;
 * 3. only on a port no profile binds: the TLS SNI when present, else Host,
 *    and only among the profiles that bind no port (a profile reachable by
 *    port is never reachable by naming its host on another port);
 * 4. `defaultGateway`.
 * Pure: compiled once per route table.
 */
import type { HostMatcher } from './host-match.js';

export interface SelectableGateway<G> {
  readonly gateway: G;
  readonly hosts: HostMatcher | undefined;
  readonly ports: readonly number[];
}

export interface SelectionInput {
  readonly contextExtensions: Readonly<Record<string, string>>;
  readonly destinationPort: number;
  readonly sni: string;
  readonly host: string;
}

export function compileGatewaySelector<G>(
  named: ReadonlyMap<string, G>,
  entries: readonly SelectableGateway<G>[],
  fallback: G | undefined,
): (req: SelectionInput, why?: (by: string) => void) => G | undefined {
  const byPort = new Map<number, G>();
  for (const e of entries) for (const p of e.ports) byPort.set(p, e.gateway);
  const portless = entries.filter((e) => e.ports.length === 0 && e.hosts !== undefined);
  // `why` is passed only by explain; the hot path never builds the strings.
  return (req, why) => {
    const name = req.contextExtensions['gateway'];
    if (name !== undefined) {
      why?.(`context_extensions.gateway = ${JSON.stringify(name)}${named.has(name) ? '' : ' (no such gateway)'}`);
      return named.get(name);
    }
    if (req.destinationPort !== 0) {
      const gw = byPort.get(req.destinationPort);
      if (gw !== undefined) {
        why?.(`destination port ${req.destinationPort} (select.ports)`);
        return gw;
      }
    }
    const by = req.sni !== '' ? req.sni : req.host;
    if (by !== '') {
      for (const e of portless) {
        if (e.hosts!(by)) {
          why?.(`${req.sni !== '' ? 'TLS SNI' : 'Host'} ${by} (select.hosts; port ${req.destinationPort} selects no gateway)`);
          return e.gateway;
        }
      }
    }
    why?.(fallback === undefined ? `nothing selects a gateway (port ${req.destinationPort}, host ${JSON.stringify(by)}) and no defaultGateway is set` : 'defaultGateway (nothing else selected one)');
    return fallback;
  };
}
