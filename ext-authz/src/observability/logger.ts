import { pino, type Logger, type DestinationStream } from 'pino';

/** JSON logs on stdout; the audit channel is a child logger so it can be filtered by `log: "audit"`. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'passgate' }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(options, destination) : pino(options);
}
