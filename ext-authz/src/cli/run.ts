/**
 * The `passgate` command line. Every flag and argument is checked
 * (node:util parseArgs, strict): a typo is a usage error (exit 2), never a
 * service started on some default.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile, resolveConfigPath } from '../config/load.js';
import { defaultComposition } from '../capabilities/index.js';
import { FDS_USAGE, runFdsCli } from './fds.js';
import { serve } from './serve.js';
import { EXPLAIN_USAGE, ExplainUsage, runExplain } from './explain.js';

// Subcommands are listed here only once they ship.
export const USAGE = `usage: passgate [serve] (--config FILE | --dev)   start the ext_authz service
       passgate validate FILE                      check a config file, start nothing
       passgate explain --config FILE [-X M] [-H 'N: V'] [--cert PEM] [--ip IP] URL
                                                   why a request gets its answer (dry run, no side effects; passgate explain --help)
       passgate stages                             list the stage types a route may use
       passgate fds <block|unblock|list|inspect> ...   manage FDS block lists (see passgate fds help)
       passgate --help

serve options:
  --config FILE   the YAML config (or set PASSGATE_CONFIG)
  --dev           without --config/PASSGATE_CONFIG, run the embedded development config
                  (demo users, a generated key; never in production)
exit codes: 0 ok, 1 failed (invalid config, cannot start), 2 usage error`;

class UsageError extends Error {}

export interface CliOutput {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const stdio: CliOutput = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

type Options = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

function parse(args: readonly string[], options: Options, maxPositionals: number): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: true });
  } catch (err) {
    // parseArgs names the flag ("Unknown option '--conf'"); keep its words.
    throw new UsageError((err as Error).message);
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument "${parsed.positionals[maxPositionals]}"`);
  }
  return parsed as { values: Record<string, string | boolean | undefined>; positionals: string[] };
}

/** Runs one command; resolves with the exit code, or undefined while `serve` keeps running. */
export async function runCli(argv: readonly string[], io: CliOutput = stdio): Promise<number | undefined> {
  try {
    const first = argv[0];
    // Only flags (or nothing): serve, so `passgate --config x.yaml` keeps working.
    const command = first === undefined || first.startsWith('-') ? 'serve' : first;
    const rest = command === first ? argv.slice(1) : argv;
    switch (command) {
      case 'serve': {
        const p = parse(rest, { config: { type: 'string' }, dev: { type: 'boolean' } }, 0);
        if (p.values['help']) return help(io);
        const choice = resolveConfigPath({ config: p.values['config'] as string | undefined, dev: p.values['dev'] === true }, process.env);
        return await serve(choice);
      }
      case 'validate': {
        const p = parse(rest, {}, 1);
        if (p.values['help']) return help(io);
        const file = p.positionals[0];
        if (file === undefined) throw new UsageError('validate needs a FILE, e.g. passgate validate k8s/base/config/passgate.yaml');
        const config = loadConfigFile(file);
        const gateways = Object.values(config.gateways);
        const routes = gateways.reduce((n, g) => n + g.routes.length + (g.defaultRoute ? 1 : 0), 0);
        io.out(`${file}: valid (${gateways.length} gateway(s), ${routes} route(s))`);
        return 0;
      }
      case 'explain': {
        const p = parse(
          rest,
          {
            config: { type: 'string' },
            request: { type: 'string', short: 'X' },
            header: { type: 'string', short: 'H', multiple: true },
            cert: { type: 'string' },
            xfcc: { type: 'boolean' },
            ip: { type: 'string' },
            gateway: { type: 'string' },
            'check-request': { type: 'string' },
            json: { type: 'boolean' },
          },
          1,
        );
        if (p.values['help']) {
          io.out(EXPLAIN_USAGE);
          return 0;
        }
        const v = p.values as Record<string, string | boolean | string[] | undefined>;
        const config = v['config'] as string | undefined;
        if (config === undefined) throw new UsageError('explain needs --config FILE (the config whose decision you want explained)');
        try {
          return await runExplain(
            {
              config,
              ...(p.positionals[0] === undefined ? {} : { url: p.positionals[0] }),
              ...(v['request'] === undefined ? {} : { method: v['request'] as string }),
              headers: (v['header'] as string[] | undefined) ?? [],
              ...(v['cert'] === undefined ? {} : { cert: v['cert'] as string }),
              xfcc: v['xfcc'] === true,
              ...(v['ip'] === undefined ? {} : { ip: v['ip'] as string }),
              ...(v['gateway'] === undefined ? {} : { gateway: v['gateway'] as string }),
              ...(v['check-request'] === undefined ? {} : { checkRequest: v['check-request'] as string }),
            },
            v['json'] === true,
            io.out,
          );
        } catch (err) {
          if (err instanceof ExplainUsage) throw new UsageError(err.message);
          throw err;
        }
      }
      case 'stages': {
        const p = parse(rest, {}, 0);
        if (p.values['help']) return help(io);
        const defs = [...defaultComposition().stageTypes.values()].map((t) => t.definition);
        const width = Math.max(...defs.map((d) => d.type.length));
        for (const d of defs) io.out(`${d.type.padEnd(width)}  ${d.description}`);
        return 0;
      }
      case 'fds':
        return await runFdsCli(argv.slice(1), { env: process.env, out: io.out, err: io.err });
      case 'help':
        return help(io);
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`passgate: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof ConfigError) {
      io.err(`passgate: ${err.message}`);
      return err.source === '--config' || err.source === '(no config)' ? 2 : 1;
    }
    throw err;
  }
}

function help(io: CliOutput): number {
  io.out(USAGE);
  return 0;
}

export { FDS_USAGE };
