/**
 * Every JSON log line the test suite produces must be one pino wrote as pino
 * means it: one `level` (a pino level number), one `time` (epoch ms or the
 * ISO time our loggers use), a string `msg`. A field that shadows one of
 * them (a second "level" key) is what log pipelines misread, so duplicate
 * top-level keys are an error too. Lines reach the file named by
 * PASSGATE_LOG_TEE (set by ./log-tee.ts) from createLogger and captureLogs.
 */
import { existsSync, readFileSync } from 'node:fs';

export const LOG_TEE_ENV = 'PASSGATE_LOG_TEE';
const PINO_LEVELS = new Set([10, 20, 30, 40, 50, 60]);
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Top-level keys of a JSON object text, in order, duplicates kept (JSON.parse keeps only the last). */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return keys;
}

/** The problems of one line; empty when it is a proper pino line. */
export function logLineProblems(line: string): string[] {
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch {
    return ['not JSON'];
  }
  if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) return ['not a JSON object'];
  const r = rec as Record<string, unknown>;
  const problems: string[] = [];
  const keys = topLevelKeys(line);
  const dup = keys.filter((k, i) => keys.indexOf(k) !== i);
  if (dup.length > 0) problems.push(`duplicate key(s) ${[...new Set(dup)].join(', ')}`);
  if (typeof r['level'] !== 'number' || !PINO_LEVELS.has(r['level'])) problems.push(`level ${JSON.stringify(r['level'])} is not a pino level number`);
  const t = r['time'];
  if (!(typeof t === 'number' && Number.isInteger(t) && t > 0) && !(typeof t === 'string' && ISO_TIME.test(t))) problems.push(`time ${JSON.stringify(t)} is not epoch ms or ISO time`);
  if (typeof r['msg'] !== 'string') problems.push(`msg ${JSON.stringify(r['msg'])} is not a string`);
  return problems;
}

/** Throws naming every bad line of the tee file (at most 20 shown); returns how many lines were checked. */
export function checkLogFile(path: string): number {
  if (!existsSync(path)) return 0;
  const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const bad: string[] = [];
  for (const line of lines) {
    const p = logLineProblems(line);
    if (p.length > 0) bad.push(`${p.join('; ')}: ${line.slice(0, 300)}`);
  }
  if (bad.length > 0) throw new Error(`${bad.length} of ${lines.length} log line(s) are not proper pino lines:\n${bad.slice(0, 20).join('\n')}`);
  return lines.length;
}
