/**
 * Runs a Passgate service in its own process (so tests can SIGSTOP or kill
 * it). Config YAML from the PASSGATE_CHILD_CONFIG env var; prints one JSON
 * line {grpcPort, adminPort} once listening.
 */
import { pino } from 'pino';
import { parseConfigText } from '../../../ext-authz/src/config/load.js';
import { PassgateService } from '../../../ext-authz/src/server/service.js';

const yaml = process.env['PASSGATE_CHILD_CONFIG'];
if (!yaml) {
  process.stderr.write('service-child: set PASSGATE_CHILD_CONFIG to the config YAML\n');
  process.exit(2);
}
const svc = await PassgateService.start({ config: parseConfigText(yaml, 'child.yaml'), grpcPort: 0, adminPort: 0, processMetrics: false, watchConfig: false, logger: pino({ level: 'silent' }) });
process.stdout.write(`${JSON.stringify({ grpcPort: svc.grpcPort, adminPort: svc.adminPort })}\n`);
process.on('SIGTERM', () => void svc.stop(200).then(() => process.exit(0)));
