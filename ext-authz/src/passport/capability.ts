/**
 * The passport capability: the passport and relay stages, the `passport`
 * section, and the JWKS on the admin port. Prepare loads the keys (a bad key
 * file rejects the config; the old keys keep signing and stay published)
 * and builds sources and relay providers, taking over unchanged ones.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Capability, Prepared } from '../capabilities/capability.js';
import { sendJson } from '../capabilities/admin-http.js';
import { passportConfigSchema } from './config.js';
import { passportStage } from './passport-stage.js';
import { relayStage } from './relay-stage.js';
import {
  buildPassportState,
  closePassportState,
  discardPassportState,
  passportMetrics,
  retirePassportState,
  type PassportState,
} from './runtime.js';

function serveJwks(state: PassportState) {
  return (req: IncomingMessage, res: ServerResponse) => {
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
  };
}

export const passportCapability: Capability<PassportState | undefined> = {
  name: 'passport',
  section: { key: 'passport', schema: passportConfigSchema },
  stages: [passportStage, relayStage],
  // Whatever the routes: a Passport header a client could send itself would be believed upstream.
  check(config) {
    const ph = config.passport?.header;
    if (ph === undefined || config.headers.internal.includes(ph) || config.headers.internalPrefixes.some((p) => ph.startsWith(p))) return [];
    return [
      {
        path: ['passport', 'header'],
        message: `"${ph}" is not an internal header: list it in headers.internal (or use a headers.internalPrefixes prefix) so it is stripped from every client request`,
      },
    ];
  },
  prepare(config, ctx): Prepared<PassportState | undefined> {
    const prev = ctx.previous;
    if (config.passport === undefined) {
      // Section removed: nothing is served or signed; the old parts close once replaced.
      return { state: undefined, retire: () => undefined, close: () => undefined };
    }
    // Throws a ConfigError naming passport.keys on a bad key file: the config is rejected.
    const state = buildPassportState(config.passport, prev, passportMetrics(ctx.metrics.registry));
    const path = state.config.jwks.path;
    return {
      state,
      adminRoutes: [{ method: 'GET', path, handler: serveJwks(state) }],
      warm: () => state.issuer.warm(),
      discard: () => discardPassportState(state, prev),
      retire: (next) => retirePassportState(state, next),
      close: () => closePassportState(state),
    };
  },
};
