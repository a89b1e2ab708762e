/**
 * The checker behind the suite-wide log line check (test/support/log-tee.ts):
 * it must catch a planted bad line, including the real way such lines are
 * made (a log field named `level`).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { checkLogFile, logLineProblems } from '../support/log-lines.js';
import { createLogger } from '../../ext-authz/src/observability/logger.js';

function linesOf(write: (log: pino.Logger) => void, make: (s: Writable) => pino.Logger): string[] {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk, _e, cb) {
      out.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  write(make(stream));
  return out;
}

describe('log lines are pino lines', () => {
  it("accepts our loggers' lines (ISO time) and plain pino's (epoch time)", () => {
    const ours = linesOf((l) => l.info({ kind: 'user', nested: { level: 3 } }, 'hello'), (s) => createLogger('info', s));
    const plain = linesOf((l) => l.warn('w'), (s) => pino(s));
    for (const line of [...ours, ...plain]) assert.deepEqual(logLineProblems(line), [], line);
  });

  it('rejects a line whose fields repeat level (what a `level` log field does)', () => {
    const [line] = linesOf((l) => l.info({ rule: 'r', level: 1 }, 'FDS rule blocked a subject'), (s) => createLogger('info', s));
    assert.ok(logLineProblems(line!).some((p) => p.startsWith('duplicate key(s) level')), line);
  });

  it('rejects planted bad lines', () => {
    const cases: Array<[string, RegExp]> = [
      ['not json', /not JSON/],
      ['[1,2]', /not a JSON object/],
      ['{"level":"info","time":1700000000000,"msg":"x"}', /level "info"/],
      ['{"level":35,"time":1700000000000,"msg":"x"}', /level 35/],
      ['{"level":30,"msg":"x"}', /time undefined/],
      ['{"level":30,"time":"yesterday","msg":"x"}', /time "yesterday"/],
      ['{"level":30,"time":1700000000000,"message":"x"}', /msg undefined/],
      ['{"level":30,"time":1700000000000,"msg":"x","time":2}', /duplicate key\(s\) time/],
    ];
    for (const [line, re] of cases) assert.ok(logLineProblems(line).some((p) => re.test(p)), `${line}: ${logLineProblems(line).join('; ')}`);
    assert.deepEqual(logLineProblems('{"level":30,"time":1700000000000,"msg":"a \\"level\\": 1","x":{"level":2}}'), []);
  });

  it('checkLogFile fails on one planted bad line among good ones and names it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'passgate-loglines-'));
    const file = join(dir, 'lines.jsonl');
    const good = '{"level":30,"time":"2026-01-01T00:00:00.000Z","msg":"ok"}';
    writeFileSync(file, `${good}\n${good}\n`);
    assert.equal(checkLogFile(file), 2);
    writeFileSync(file, `${good}\n{"level":30,"time":"2026-01-01T00:00:00.000Z","msg":"b","level":1}\n${good}\n`);
    assert.throws(() => checkLogFile(file), /1 of 3 log line\(s\) are not proper pino lines:\nduplicate key\(s\) level/);
  });
});
