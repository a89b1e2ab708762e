#!/usr/bin/env node
/** The `passgate` binary; see ./run.ts for the commands. */
import { runCli } from './run.js';

void runCli(process.argv.slice(2)).then((code) => {
  if (code !== undefined) process.exitCode = code;
});
