/**
 * FDS admin API on the admin port, under /admin/fds/:
 *   GET    /admin/fds/blocks?kind=&cursor=&count=   list (SCAN pages; `next` is the cursor for the next page)
 *   POST   /admin/fds/blocks                        block  {kind, subject, reason, ttl: "15m" | ms | "none", createdBy?}
 *   DELETE /admin/fds/blocks?kind=&subject=         unblock (reaches every replica's cache via pub/sub)
 *   GET    /admin/fds/inspect?kind=&subject=        block, rule counters and offense level of one subject
 * Every call needs `Authorization: Bearer <token>`; with no token configured the API answers 503.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { bearerMatches, readJsonBody, sendJson, type AdminHandler } from '../capabilities/admin-http.js';
import type { FdsEngine } from './engine.js';
import { blockTtl } from './config.js';
import { SUBJECT_KINDS, isSubjectKind, normalizeSubject, type SubjectKind } from './subjects.js';
import type { BlockRecord } from './store/store.js';

const MAX_BODY = 16 * 1024;

class BadRequest extends Error {}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const r = await readJsonBody(req, MAX_BODY, 'send a JSON object');
  if (!r.ok) throw new BadRequest(r.reason);
  return r.value;
}

function parseKind(v: unknown): SubjectKind {
  if (!isSubjectKind(v)) throw new BadRequest(`${v === undefined || v === null || v === '' ? 'kind is required' : `unknown subject kind "${String(v)}"`}; use one of ${SUBJECT_KINDS.join(', ')}`);
  return v;
}

function parseSubject(kind: SubjectKind, v: unknown): string {
  const r = normalizeSubject(kind, v);
  if (!r.ok) throw new BadRequest(`${kind} subject: ${r.error}`);
  return r.subject;
}

/** `"15m"`, `90000`, `"none"` / null → ms or null; throws a precise message otherwise. */
function parseTtl(v: unknown): number | null {
  if (v === undefined) throw new BadRequest('ttl is required: a duration like 30s, 15m, 1h, 7d, or "none" for a block until unblocked');
  const r = blockTtl(v, 'ttl');
  if ('error' in r) throw new BadRequest(r.error);
  return r.ms;
}

function text(v: unknown, field: string, max: number, required: boolean): string | undefined {
  if (v === undefined || v === null || v === '') {
    if (required) throw new BadRequest(`${field} is required`);
    return undefined;
  }
  if (typeof v !== 'string' || v.length > max || /[\u0000-\u001f\u007f]/.test(v)) throw new BadRequest(`${field} must be text of at most ${max} characters without control characters`);
  return v;
}

export function createFdsAdminHandler(engine: FdsEngine | undefined, logger: Logger): AdminHandler {
  return async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (!engine) return sendJson(res, 404, { error: 'fds_disabled', reason: 'FDS is not configured on this instance (no fds: section and no fds stage)' });
    const token = engine.adminToken;
    if (!token)
      return sendJson(res, 503, {
        error: 'admin_disabled',
        reason: `the FDS admin API is off because no token is configured; set fds.admin.token, fds.admin.tokenFile or the ${engine.settings.admin.tokenEnv} environment variable`,
      });
    if (!bearerMatches(token, req.headers.authorization)) {
      // Logged and counted, never with the token sent: a guessing client shows up in metrics and logs.
      const why = req.headers.authorization === undefined ? 'missing' : 'invalid';
      engine.metrics.adminAuthFailures.inc({ api: 'fds', why });
      logger.warn({ admin: 'auth_failed', api: 'fds', why, method: req.method, path: url.pathname, remote: req.socket.remoteAddress }, 'FDS admin request refused: bad or missing bearer token');
      return sendJson(res, 401, { error: 'unauthorized', reason: 'send Authorization: Bearer <fds admin token>' }, { 'www-authenticate': 'Bearer realm="passgate-admin"' });
    }
    try {
      const path = url.pathname;
      const q = url.searchParams;
      if (path === '/admin/fds/blocks' && req.method === 'GET') {
        const kind = q.has('kind') ? parseKind(q.get('kind')) : undefined;
        const count = q.has('count') ? Number(q.get('count')) : 100;
        if (!Number.isInteger(count) || count < 1 || count > 1000) throw new BadRequest('count must be an integer from 1 to 1000');
        const page = await engine.store.list(q.get('cursor') || null, count, kind);
        return sendJson(res, 200, page);
      }
      if (path === '/admin/fds/blocks' && req.method === 'POST') {
        const body = await readBody(req);
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequest('request body must be a JSON object');
        const b = body as Record<string, unknown>;
        const unknownKeys = Object.keys(b).filter((k) => !['kind', 'subject', 'reason', 'ttl', 'createdBy'].includes(k));
        if (unknownKeys.length > 0) throw new BadRequest(`unknown field(s) ${unknownKeys.join(', ')}; allowed: kind, subject, reason, ttl, createdBy`);
        const kind = parseKind(b['kind']);
        const subject = parseSubject(kind, b['subject']);
        const reason = text(b['reason'], 'reason', 200, true)!;
        const ttlMs = parseTtl(b['ttl']);
        const by = text(b['createdBy'], 'createdBy', 100, false) ?? 'api';
        const now = Date.now();
        const record: BlockRecord = { kind, subject, reason, createdBy: `admin:${by}`, createdAt: now, ttlMs, expiresAt: ttlMs === null ? null : now + ttlMs };
        await engine.store.block(record);
        engine.metrics.blocksCreated.inc({ kind, source: 'admin' });
        logger.info({ fds: 'block', kind, subject, reason, ttlMs, createdBy: record.createdBy }, 'FDS block created by admin');
        return sendJson(res, 201, { block: record });
      }
      if (path === '/admin/fds/blocks' && req.method === 'DELETE') {
        const kind = parseKind(q.get('kind'));
        const subject = parseSubject(kind, q.get('subject'));
        engine.forget(kind, subject);
        const removed = await engine.store.unblock(kind, subject);
        logger.info({ fds: 'unblock', kind, subject, removed }, 'FDS block removed by admin');
        return sendJson(res, removed ? 200 : 404, removed ? { removed: true, kind, subject } : { removed: false, error: 'not_blocked', reason: `${kind} ${subject} is not blocked` });
      }
      if (path === '/admin/fds/inspect' && req.method === 'GET') {
        const kind = parseKind(q.get('kind'));
        const subject = parseSubject(kind, q.get('subject'));
        const rules = engine.rules.all.filter((r) => r.kind === kind);
        const found = await engine.store.inspect(kind, subject, rules);
        const cidr = kind === 'ip' && !subject.includes('/') ? engine.cached('ip', subject) : undefined;
        return sendJson(res, 200, { kind, subject, blocked: found.block ?? null, coveredBy: cidr?.subject.includes('/') ? cidr : null, counters: found.counters, offenses: found.offenses });
      }
      return sendJson(res, 404, {
        error: 'not_found',
        reason: `no FDS admin endpoint ${req.method} ${path}; endpoints: GET/POST/DELETE /admin/fds/blocks, GET /admin/fds/inspect`,
      });
    } catch (err) {
      if (err instanceof BadRequest) return sendJson(res, 400, { error: 'bad_request', reason: err.message });
      logger.warn({ err: (err as Error).message }, 'FDS admin request failed: store unavailable');
      return sendJson(res, 503, { error: 'fds_unavailable', reason: `the FDS store did not answer: ${(err as Error).message}` });
    }
  };
}
