import { pino, type Logger, type DestinationStream } from 'pino';

/**
 * JSON logs on stdout; the audit channel is a child logger so it can be filtered by `log: "audit"`.
 * With PASSGATE_LOG_TEE=FILE (the test suite sets it) every line is also appended to FILE, so the
 * suite can check that each line it produced is a proper pino line.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'passgate' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (destination) return pino(options, destination);
  const tee = process.env['PASSGATE_LOG_TEE'];
  if (!tee) return pino(options);
  return pino(
    options,
    pino.multistream([
      { level: 'trace', stream: pino.destination({ dest: 1, sync: true }) },
      { level: 'trace', stream: pino.destination({ dest: tee, append: true, sync: true }) },
    ]),
  );
}
