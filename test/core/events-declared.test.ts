/**
 * Every outcome a stage reports is one its stage type declares in `events`
 * (which is what lets FDS refuse a rule on an event no stage can report).
 * The event is a plain string at the call site, so this scans the sources:
 * each `.report('event', 'kind', …)` call and each `{ event: '…',
 * subjectKind: '…' }` outcome literal must be declared, for that subject
 * kind, by a stage definition exported from the same file. A report whose
 * event is not a literal must replay outcomes built from such literals.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CAPABILITIES } from '../../ext-authz/src/capabilities/index.js';
import type { StageDefinition } from '../../ext-authz/src/stages/stage.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = join(ROOT, 'ext-authz/src');

const CALL = /\.report\(\s*('([^']*)'|[^,]+)\s*,\s*('([^']*)'|[^,]+)\s*,/g;
const LITERAL = /\{\s*event:\s*'([^']*)'\s*,\s*subjectKind:\s*'([^']*)'/g;
/** Calls that replay outcomes another literal in the same file built (checked through LITERAL there). */
const REPLAYS = /^o\.event$/;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

interface Site {
  readonly file: string;
  readonly line: number;
  readonly event: string | undefined;
  readonly kind: string | undefined;
  readonly text: string;
}

function sitesOf(file: string): Site[] {
  const text = readFileSync(file, 'utf8');
  const lineOf = (i: number): number => text.slice(0, i).split('\n').length;
  const out: Site[] = [];
  for (const m of text.matchAll(CALL)) out.push({ file, line: lineOf(m.index), event: m[2], kind: m[4], text: m[0] });
  for (const m of text.matchAll(LITERAL)) out.push({ file, line: lineOf(m.index), event: m[1], kind: m[2], text: m[0] });
  return out;
}

describe('outcome events are declared by the reporting stage type', () => {
  const byType = new Map<string, StageDefinition<never>>((CAPABILITIES.flatMap((c) => c.stages ?? []) as StageDefinition<never>[]).map((d) => [d.type, d]));

  it('every ctx.report call site and outcome literal in ext-authz/src names an event and kind its stage type declares', async () => {
    const problems: string[] = [];
    let checked = 0;
    for (const file of sources(SRC)) {
      const sites = sitesOf(file).filter((s) => !s.text.includes('report(event: string'));
      if (sites.length === 0) continue;
      const mod = (await import(pathToFileURL(file.replace(/\.ts$/, '.js')).href)) as Record<string, unknown>;
      // By type name: the composed definition of that type is the one FDS checks rules against.
      const defs = Object.values(mod)
        .map((v) => (v !== null && typeof v === 'object' && typeof (v as { create?: unknown }).create === 'function' ? byType.get((v as StageDefinition<never>).type) : undefined))
        .filter((d): d is StageDefinition<never> => d !== undefined);
      const where = (s: Site): string => `${relative(ROOT, s.file)}:${s.line}`;
      for (const s of sites) {
        if (s.event === undefined) {
          const arg = /\.report\(\s*([^,]+),/.exec(s.text)?.[1]?.trim() ?? '';
          if (!REPLAYS.test(arg)) problems.push(`${where(s)}: event ${arg} is not a literal (report a declared event by name)`);
          continue;
        }
        checked++;
        if (defs.length === 0) {
          problems.push(`${where(s)}: reports "${s.event}" but the file exports no stage definition of the composition`);
          continue;
        }
        const ok = defs.some((d) => (d.events ?? []).some((e) => e.event === s.event && (s.kind === undefined || (e.kinds as readonly string[]).includes(s.kind))));
        if (!ok) problems.push(`${where(s)}: "${s.event}" for ${s.kind} is not in the events of ${defs.map((d) => d.type).join(', ')}`);
      }
    }
    assert.deepEqual(problems, []);
    // The scan must actually see the known reporters (mtls, jwt, proof, oauth2), or it proves nothing.
    assert.ok(checked >= 10, `only ${checked} call sites found`);
  });

  it('the scan finds an undeclared event (shown on a planted source line)', () => {
    const planted = "ctx.report('made_up', 'ip', ip); outcomes.push({ event: 'other', subjectKind: 'user', subject });";
    const calls = [...planted.matchAll(CALL)].map((m) => [m[2], m[4]]);
    const literals = [...planted.matchAll(LITERAL)].map((m) => [m[1], m[2]]);
    assert.deepEqual(calls, [['made_up', 'ip']]);
    assert.deepEqual(literals, [['other', 'user']]);
  });
});
