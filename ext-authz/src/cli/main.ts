#!/usr/bin/env node
/**
 * `passgate <command>`: `fds ...` talks to the FDS admin API; `serve` (or no
 * command, or only options like --config) starts the ext_authz service.
 */
import { FDS_USAGE, runFdsCli } from './fds.js';

const USAGE = `usage: passgate [serve] [--config FILE]    start the ext_authz service
       passgate fds <block|unblock|list|inspect> ...   manage FDS block lists

${FDS_USAGE}`;

async function main(argv: readonly string[]): Promise<void> {
  const command = argv[0];
  if (command === 'fds') {
    process.exitCode = await runFdsCli(argv.slice(1), {
      env: process.env,
      out: (l) => process.stdout.write(`${l}\n`),
      err: (l) => process.stderr.write(`${l}\n`),
    });
    return;
  }
  if (command === undefined || command === 'serve' || command.startsWith('--')) {
    await import('../main.js'); // starts the service (reads --config from process.argv)
    return;
  }
  if (command === 'help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  process.stderr.write(`passgate: unknown command "${command}"\n${USAGE}\n`);
  process.exitCode = 2;
}

void main(process.argv.slice(2));
