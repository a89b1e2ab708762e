/**
 * The service under test for `bench:fds`, in its own process so the load
 * generator does not share its event loop. Config comes as JSON in
 * BENCH_FDS_CONFIG; prints `{"grpcPort":..,"adminPort":..}` once listening.
 */
import { pino } from 'pino';
import { validateConfig } from '../../ext-authz/src/config/load.js';
import { PassgateService } from '../../ext-authz/src/server/service.js';

const config = validateConfig(JSON.parse(process.env['BENCH_FDS_CONFIG'] ?? '{}'), 'BENCH_FDS_CONFIG');
const svc = await PassgateService.start({ config, grpcPort: 0, adminPort: 0, processMetrics: false, logger: pino({ level: 'silent' }) });
process.stdout.write(`${JSON.stringify({ grpcPort: svc.grpcPort, adminPort: svc.adminPort })}\n`);
process.on('SIGTERM', () => void svc.stop(500).then(() => process.exit(0)));
