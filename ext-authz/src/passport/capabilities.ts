/**
 * The passport capability: loads the keys (and sources) at start and on
 * every reload (a bad key file rejects the reload; the old keys keep
 * signing), and serves the JWKS on the admin port.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Capability, CapabilityHost } from '../server/capability.js';
import type { PassgateConfig } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import { sendJson } from '../server/admin-server.js';
import { KeyLoadError } from './keys.js';
import { passportRuntime, type PassportRuntime } from './runtime.js';

function apply(runtime: PassportRuntime, config: PassgateConfig): void {
  if (config.passport === undefined) return;
  try {
    runtime.update(config.passport);
  } catch (err) {
    if (err instanceof KeyLoadError) throw new ConfigError('passport.keys', err.problems);
    throw err;
  }
}

export function passportCapabilities(): Capability[] {
  let runtime: PassportRuntime | undefined;
  const mounted = new Set<string>();

  const mount = (host: CapabilityHost, path: string) => {
    if (mounted.has(path)) return;
    mounted.add(path);
    host.admin.route('GET', path, (req: IncomingMessage, res: ServerResponse) => {
      // Only the path the current config names answers; an old path from before a reload goes 404.
      const state = runtime?.state;
      if (state === undefined || state.config.jwks.path !== path) {
        sendJson(res, 404, { error: 'not_found', reason: 'no passport keys configured at this path' });
        return;
      }
      const ring = state.ring;
      const headers = {
        'cache-control': `public, max-age=${state.config.jwks.maxAgeSeconds}`,
        etag: ring.etag,
      };
      if (req.headers['if-none-match'] === ring.etag) {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      res.writeHead(200, { ...headers, 'content-type': 'application/jwk-set+json', 'content-length': Buffer.byteLength(ring.jwksBody) });
      res.end(ring.jwksBody);
    });
  };

  return [
    {
      name: 'passport',
      start(host) {
        runtime = passportRuntime(host.services, host.metrics.registry);
        apply(runtime, host.config);
        if (host.config.passport) mount(host, host.config.passport.jwks.path);
      },
      reload(config, host) {
        runtime ??= passportRuntime(host.services, host.metrics.registry);
        apply(runtime, config);
        if (config.passport) mount(host, config.passport.jwks.path);
      },
      stop() {
        runtime?.close();
      },
    },
  ];
}
