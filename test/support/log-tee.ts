/**
 * Mocha root hooks (.mocharc.json `require`): every log line of the run is
 * also appended to one file (PASSGATE_LOG_TEE, inherited by the processes
 * tests spawn), and after the last test each line is checked (./log-lines.ts).
 * A bad line fails the run in this "after all" hook.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOG_TEE_ENV, checkLogFile } from './log-lines.js';

const dir = mkdtempSync(join(tmpdir(), 'passgate-logs-'));
const file = join(dir, 'lines.jsonl');
// Set at load time, before any test creates a logger or spawns a process.
process.env[LOG_TEE_ENV] = file;

export const mochaHooks = {
  afterAll(this: { timeout(ms: number): void }): void {
    this.timeout(60_000);
    try {
      checkLogFile(file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
