/**
 * `passgate fds block|unblock|list|inspect`: a thin client of the FDS admin
 * API. Input is checked here first so a typo gets a precise message without
 * a round trip; the server checks again (it is the authority).
 */
import { readFileSync } from 'node:fs';
import { SUBJECT_KINDS, isSubjectKind, normalizeSubject } from '../fds/subjects.js';
import { blockTtl } from '../fds/config.js';

export interface CliIo {
  readonly env: NodeJS.ProcessEnv;
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export const FDS_USAGE = `usage: passgate fds <command> [options]

commands:
  block <kind> <subject> --ttl <duration|none> --reason <text> [--by <name>]
  unblock <kind> <subject>
  list [--kind <kind>] [--count <n>]          pages through every block (SCAN)
  inspect <kind> <subject>                    block, rule counters, offense level

kinds: ${SUBJECT_KINDS.join(', ')}  (ip accepts addresses and CIDR ranges, IPv4 and IPv6)
durations: 30s, 15m, 1h, 7d (1s to 365d), or "none" (until unblocked)

options:
  --url <admin url>     default $PASSGATE_ADMIN_URL or http://127.0.0.1:9090
  --token <token>       default $PASSGATE_FDS_ADMIN_TOKEN
  --token-file <path>   read the token from a file
  --json                print raw JSON
exit codes: 0 ok, 1 request failed or not found, 2 usage error`;

class Usage extends Error {}

interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

const VALUE_FLAGS = new Set(['url', 'token', 'token-file', 'ttl', 'reason', 'by', 'kind', 'count']);
const BOOL_FLAGS = new Set(['json', 'help']);

function parseArgs(args: readonly string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-h') {
      flags.set('help', true);
      continue;
    }
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
    if (BOOL_FLAGS.has(name)) {
      flags.set(name, true);
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw new Usage(`unknown option --${name}`);
    const value = eq === -1 ? args[++i] : a.slice(eq + 1);
    if (value === undefined) throw new Usage(`--${name} needs a value`);
    flags.set(name, value);
  }
  return { positional, flags };
}

function flag(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

function kindAndSubject(p: Parsed, command: string): { kind: string; subject: string } {
  const [, kind, subject, extra] = p.positional;
  if (kind === undefined || subject === undefined) throw new Usage(`${command} needs <kind> <subject>, e.g. passgate fds ${command} ip 203.0.113.7`);
  if (extra !== undefined) throw new Usage(`unexpected argument "${extra}" (quote subjects that contain spaces)`);
  if (!isSubjectKind(kind)) throw new Usage(`unknown subject kind "${kind}"; use one of ${SUBJECT_KINDS.join(', ')}`);
  const norm = normalizeSubject(kind, subject);
  if (!norm.ok) throw new Usage(`${kind} subject: ${norm.error}`);
  return { kind, subject: norm.subject };
}

function checkTtl(v: string | undefined): string {
  if (v === undefined) throw new Usage('block needs --ttl <duration> (e.g. 15m, 1h, 7d) or --ttl none');
  const r = blockTtl(v, '--ttl');
  if ('error' in r) throw new Usage(r.error);
  return v;
}

function token(p: Parsed, env: NodeJS.ProcessEnv): string {
  const direct = flag(p, 'token') ?? env['PASSGATE_FDS_ADMIN_TOKEN'];
  if (direct) return direct.trim();
  const file = flag(p, 'token-file');
  if (file) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new Usage(`cannot read --token-file ${file}: ${(err as Error).message}`);
    }
  }
  throw new Usage('no admin token: pass --token, --token-file or set PASSGATE_FDS_ADMIN_TOKEN');
}

function describe(r: Record<string, unknown>): string {
  const expires = r['expiresAt'] === null ? 'never' : new Date(Number(r['expiresAt'])).toISOString();
  return `${String(r['kind']).padEnd(7)} ${String(r['subject']).padEnd(40)} expires ${expires}  by ${String(r['createdBy'])}  reason: ${String(r['reason'])}`;
}

export async function runFdsCli(args: readonly string[], io: CliIo): Promise<number> {
  let p: Parsed;
  try {
    p = parseArgs(args);
    const command = p.positional[0];
    if (p.flags.has('help') || command === undefined || command === 'help') {
      io.out(FDS_USAGE);
      return command === undefined && !p.flags.has('help') ? 2 : 0;
    }
    const base = (flag(p, 'url') ?? io.env['PASSGATE_ADMIN_URL'] ?? 'http://127.0.0.1:9090').replace(/\/+$/, '');
    if (!/^https?:\/\//.test(base)) throw new Usage(`--url "${base}" must start with http:// or https://`);
    let method: string;
    let path: string;
    let body: string | undefined;
    switch (command) {
      case 'block': {
        const { kind, subject } = kindAndSubject(p, 'block');
        const ttl = checkTtl(flag(p, 'ttl'));
        const reason = flag(p, 'reason');
        if (!reason) throw new Usage('block needs --reason <text> (kept in the audit trail)');
        method = 'POST';
        path = '/admin/fds/blocks';
        body = JSON.stringify({ kind, subject, reason, ttl, createdBy: flag(p, 'by') ?? io.env['USER'] ?? 'cli' });
        break;
      }
      case 'unblock': {
        const { kind, subject } = kindAndSubject(p, 'unblock');
        method = 'DELETE';
        path = `/admin/fds/blocks?kind=${encodeURIComponent(kind)}&subject=${encodeURIComponent(subject)}`;
        break;
      }
      case 'inspect': {
        const { kind, subject } = kindAndSubject(p, 'inspect');
        method = 'GET';
        path = `/admin/fds/inspect?kind=${encodeURIComponent(kind)}&subject=${encodeURIComponent(subject)}`;
        break;
      }
      case 'list': {
        const kind = flag(p, 'kind');
        if (kind !== undefined && !isSubjectKind(kind)) throw new Usage(`unknown subject kind "${kind}"; use one of ${SUBJECT_KINDS.join(', ')}`);
        const count = flag(p, 'count') ?? '100';
        if (!/^\d+$/.test(count) || Number(count) < 1 || Number(count) > 1000) throw new Usage('--count must be an integer from 1 to 1000');
        return await list(base, token(p, io.env), kind, count, p.flags.has('json'), io);
      }
      default:
        throw new Usage(`unknown command "${command}"; use block, unblock, list or inspect`);
    }
    const res = await call(base, token(p, io.env), method, path, body);
    if (p.flags.has('json')) io.out(JSON.stringify(res.json, null, 2));
    if (res.status >= 400) {
      io.err(`passgate fds ${command}: ${res.status} ${String(res.json['reason'] ?? res.json['error'] ?? 'request failed')}`);
      return 1;
    }
    if (!p.flags.has('json')) {
      if (command === 'block') io.out(`blocked: ${describe(res.json['block'] as Record<string, unknown>)}`);
      else if (command === 'unblock') io.out(`unblocked ${String(res.json['kind'])} ${String(res.json['subject'])}`);
      else {
        const b = res.json['blocked'] as Record<string, unknown> | null;
        const covered = res.json['coveredBy'] as Record<string, unknown> | null;
        io.out(b ? `blocked: ${describe(b)}` : 'not blocked');
        if (covered) io.out(`covered by range: ${describe(covered)}`);
        for (const c of res.json['counters'] as Array<{ rule: string; count: number }>) io.out(`counter ${c.rule}: ${c.count}`);
        io.out(`earlier offenses remembered: ${String(res.json['offenses'])}`);
      }
    }
    return 0;
  } catch (err) {
    if (err instanceof Usage) {
      io.err(`passgate fds: ${err.message}\n(run "passgate fds help" for usage)`);
      return 2;
    }
    io.err(`passgate fds: ${(err as Error).message}`);
    return 1;
  }
}

async function call(base: string, tok: string, method: string, path: string, body?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${tok}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body } : {}),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new Error(`cannot reach the admin API at ${base}: ${cause ?? (err as Error).message} (set --url or PASSGATE_ADMIN_URL)`);
  }
  const text = await res.text();
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { error: `non-JSON answer: ${text.slice(0, 200)}` };
  }
  return { status: res.status, json };
}

async function list(base: string, tok: string, kind: string | undefined, count: string, asJson: boolean, io: CliIo): Promise<number> {
  let cursor: string | null = null;
  const seen = new Set<string>();
  const all: Array<Record<string, unknown>> = [];
  do {
    const q = new URLSearchParams({ count });
    if (kind) q.set('kind', kind);
    if (cursor) q.set('cursor', cursor);
    const res = await call(base, tok, 'GET', `/admin/fds/blocks?${q.toString()}`);
    if (res.status >= 400) {
      io.err(`passgate fds list: ${res.status} ${String(res.json['reason'] ?? res.json['error'])}`);
      return 1;
    }
    for (const item of res.json['items'] as Array<Record<string, unknown>>) {
      // SCAN may return a key twice across pages; show each block once.
      const id = `${String(item['kind'])}\u0000${String(item['subject'])}`;
      if (seen.has(id)) continue;
      seen.add(id);
      all.push(item);
      if (!asJson) io.out(describe(item));
    }
    cursor = (res.json['next'] as string | null) ?? null;
  } while (cursor);
  if (asJson) io.out(JSON.stringify(all, null, 2));
  else io.out(`${all.length} block(s)`);
  return 0;
}
