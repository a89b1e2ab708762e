/**
 * POST /admin/oauth2/revoke on the admin port, bearer-token protected
 * (constant-time compare, as the FDS admin API):
 *   {"token": "<access token>", "forward": true}  revoke a token (its SHA-256 is published; forwarded to the server by RFC 7009 when asked)
 *   {"tokenHash": "<sha256 hex>"}               revoke by hash (the token itself never leaves the caller)
 *   {"client": "<client id>"}                   revoke every token and credential of a client
 *   {"restoreClient": "<client id>"}            lift a client revocation (after rotating its secret)
 * Answers {dropped, replicas, forwarded?}. With no admin token configured it answers 503.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { bearerMatches, readJsonBody, sendJson, type AdminRoute } from '../capabilities/admin-http.js';
import { tokenHash } from './cache.js';
import type { OAuth2State } from './state.js';
import type { Revocation } from './revocation.js';
import { MAX_TOKEN } from './credentials.js';

const MAX_BODY = 16 * 1024;

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | string> {
  const r = await readJsonBody(req, MAX_BODY, 'send a JSON object');
  if (!r.ok) return r.reason;
  const v = r.value;
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : 'send a JSON object';
}

export function oauth2AdminRoutes(state: OAuth2State, adminToken: Buffer | undefined, logger: Logger): AdminRoute[] {
  return [
    {
      method: 'POST',
      path: '/admin/oauth2/revoke',
      handler: async (req, res) => {
        if (adminToken === undefined) return sendJson(res, 503, { error: 'admin_disabled', reason: 'no oauth2.admin token configured (oauth2.admin.token, tokenEnv or tokenFile)' });
        if (!bearerMatches(adminToken, req.headers.authorization)) return sendJson(res, 401, { error: 'unauthorized', reason: 'send Authorization: Bearer <oauth2 admin token>' }, { 'www-authenticate': 'Bearer realm="passgate-admin"' });
        const body = await readJson(req);
        if (typeof body === 'string') return sendJson(res, 400, { error: 'bad_request', reason: body });
        const given = ['token', 'tokenHash', 'client', 'restoreClient'].filter((k) => body[k] !== undefined);
        if (given.length !== 1) return sendJson(res, 400, { error: 'bad_request', reason: 'give exactly one of token, tokenHash, client, restoreClient' });
        const key = given[0]!;
        const value = body[key];
        if (typeof value !== 'string' || value === '' || value.length > MAX_TOKEN) return sendJson(res, 400, { error: 'bad_request', reason: `${key} must be a non-empty string of at most ${MAX_TOKEN} characters` });
        let r: Revocation;
        if (key === 'token') r = { kind: 'token', hash: tokenHash(value) };
        else if (key === 'tokenHash') {
          if (!/^[0-9a-f]{64}$/.test(value)) return sendJson(res, 400, { error: 'bad_request', reason: 'tokenHash is the lowercase hex SHA-256 of the token (64 characters)' });
          r = { kind: 'token', hash: value };
        } else if (key === 'client') r = { kind: 'client', id: value };
        else r = { kind: 'restore', id: value };
        const out = await state.revoke(r);
        let forwarded: Record<string, string> | undefined;
        if (key === 'token' && body['forward'] === true) {
          forwarded = {};
          for (const [name, server] of state.servers) {
            try {
              await server.revoke(value);
              forwarded[name] = 'revoked';
            } catch (err) {
              forwarded[name] = (err as Error).message;
            }
          }
        }
        logger.info({ revocation: r.kind, hash: r.kind === 'token' ? r.hash.slice(0, 16) : undefined, client: r.kind === 'token' ? undefined : r.id, ...out }, 'oauth2 revocation');
        sendJson(res, 200, { ...out, ...(forwarded ? { forwarded } : {}) });
      },
    },
    {
      method: 'GET',
      path: '/admin/oauth2',
      handler: (req, res) => {
        if (adminToken === undefined) return sendJson(res, 503, { error: 'admin_disabled', reason: 'no oauth2.admin token configured (oauth2.admin.token, tokenEnv or tokenFile)' });
        if (!bearerMatches(adminToken, req.headers.authorization)) return sendJson(res, 401, { error: 'unauthorized', reason: 'send Authorization: Bearer <oauth2 admin token>' });
        const c = state.cache;
        sendJson(res, 200, {
          servers: [...state.servers].map(([name, s]) => ({ name, issuer: s.config.issuer, breaker: s.breaker.state, calls: s.calls })),
          cache: { size: c.size, bytes: c.bytes, hits: c.hits, misses: c.misses, limits: c.limits },
          revocation: state.bus ? { channel: state.bus.channel } : { channel: null },
        });
      },
    },
  ];
}
