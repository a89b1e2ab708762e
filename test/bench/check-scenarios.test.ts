/**
 * The bench:check scenarios are only worth their figures while every request
 * in their mix gets the decision the scenario states. This runs each scenario's
 * config and mix through a real service, so a change that breaks a scenario
 * fails here, not first at benchmark time.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { PassgateService } from '../../ext-authz/src/server/service.js';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { SCENARIOS } from '../../bench/check/scenarios.js';
import { verifyMix } from '../../bench/check/verify.js';

describe('bench:check scenarios answer their mix as stated', function () {
  this.timeout(60_000);
  for (const name of Object.keys(SCENARIOS)) {
    it(`${name}`, async () => {
      const prepared = await SCENARIOS[name]!.prepare({ workDir: mkdtempSync(join(tmpdir(), `passgate-bench-${name}-`)) });
      const saved = { ...process.env };
      Object.assign(process.env, prepared.env ?? {});
      let svc: PassgateService | undefined;
      try {
        const config = validateConfig(prepared.config({ grpcPort: 0, adminPort: 0, audit: false, level: 'warn' }), `scenario ${name}`);
        svc = await PassgateService.start({ config, grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
        assert.ok(prepared.mix.length > 0);
        assert.deepEqual(await verifyMix(svc.grpcPort, prepared.mix), []);
      } finally {
        await svc?.stop(500);
        process.env = saved;
        await prepared.teardown?.();
      }
    });
  }
});
