/**
 * POST /explain on the admin port: `passgate explain` against the running
 * service's committed config (same JSON as `passgate explain --json`).
 * It tells how every route decides, so it is behind the admin credential,
 * the FDS admin bearer token (fds.admin.token / tokenEnv / tokenFile), the
 * same check as the FDS admin API: constant-time, refusals logged without
 * the token and counted (`passgate_admin_auth_failures_total{api="explain"}`).
 *
 * Body: a CheckRequest as Envoy sends it (`{"attributes": ...}`), or a
 * curl-like `{"url", "method"?, "headers"?, "ip"?, "gateway"?}`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { bearerMatches, readJsonBody, sendJson } from '../capabilities/admin-http.js';
import type { Checker } from '../check/checker.js';
import type { FdsEngine } from '../fds/engine.js';
import { checkRequestForUrl } from '../proto/check-request.js';
import type { CheckRequest } from '../proto/types.js';

const MAX_BODY = 64 * 1024;

const BODY_HINT = 'send a CheckRequest or {"url": "https://host/path", "method": "GET", "headers": {}}';

async function readJson(req: IncomingMessage): Promise<unknown> {
  const r = await readJsonBody(req, MAX_BODY, BODY_HINT);
  if (!r.ok) throw new Error(r.reason);
  return r.value;
}

function stringRecord(v: unknown): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
    throw new Error('headers must be an object of strings, e.g. {"authorization": "Bearer ..."}');
  }
  return v as Record<string, string>;
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new Error(`${key} must be a string`);
  return v;
}

/** The CheckRequest a body describes; throws a message saying what is wrong. */
export function requestOfBody(body: unknown): CheckRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('send a JSON object: a CheckRequest or {"url": ...}');
  const b = body as Record<string, unknown>;
  if ('attributes' in b) return b as CheckRequest;
  const url = optionalString(b, 'url');
  if (url === undefined) throw new Error('send "url" (curl-like) or "attributes" (a CheckRequest)');
  const headers = stringRecord(b['headers']);
  const method = optionalString(b, 'method');
  const ip = optionalString(b, 'ip');
  const gateway = optionalString(b, 'gateway');
  return checkRequestForUrl({
    url,
    ...(headers === undefined ? {} : { headers }),
    ...(method === undefined ? {} : { method }),
    ...(ip === undefined ? {} : { sourceAddress: ip }),
    ...(gateway === undefined ? {} : { gateway }),
  });
}

export function explainHandler(checker: () => Checker | undefined, engine: () => FdsEngine | undefined, deadlineMs: () => number, logger: Logger) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const fds = engine();
    const token = fds?.adminToken;
    if (token === undefined) {
      return sendJson(res, 503, { error: 'admin_disabled', reason: 'POST /explain uses the FDS admin token; set fds.admin.token, fds.admin.tokenFile or fds.admin.tokenEnv' });
    }
    if (!bearerMatches(token, req.headers.authorization)) {
      const why = req.headers.authorization === undefined ? 'missing' : 'invalid';
      fds!.metrics.adminAuthFailures.inc({ api: 'explain', why });
      logger.warn({ admin: 'auth_failed', api: 'explain', why, method: req.method, path: url.pathname, remote: req.socket.remoteAddress }, 'explain request refused: bad or missing bearer token');
      return sendJson(res, 401, { error: 'unauthorized', reason: 'send Authorization: Bearer <fds admin token>' }, { 'www-authenticate': 'Bearer realm="passgate-admin"' });
    }
    let request: CheckRequest;
    try {
      request = requestOfBody(await readJson(req));
    } catch (err) {
      return sendJson(res, 400, { error: 'bad_request', reason: (err as Error).message });
    }
    const c = checker();
    if (c === undefined) return sendJson(res, 503, { error: 'not_ready', reason: 'no config is committed yet' });
    sendJson(res, 200, await c.explain(request, Date.now() + deadlineMs()));
  };
}
