#!/usr/bin/env node
/**
 * The container's entry point (and `npm run start:service`): the same
 * command line as `passgate` (./cli/run.ts), so `main.js --config FILE`
 * serves and anything unknown is a usage error.
 */
import { runCli } from './cli/run.js';

void runCli(process.argv.slice(2)).then((code) => {
  if (code !== undefined) process.exitCode = code;
});
