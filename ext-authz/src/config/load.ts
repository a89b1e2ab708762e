/**
 * Reads, parses and validates the YAML config. Every failure becomes a
 * ConfigError whose lines each name the key path and what is wrong, so an
 * operator can fix the file without reading code.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import type { PassgateConfig } from './schema.js';
import { issueMessage } from './common.js';
import { ConfigError } from './errors.js';
import { defaultComposition, type Composition } from '../capabilities/index.js';
import { pathPredicateProblem } from '../routing/route-match.js';

export { ConfigError };

export const DEFAULT_CONFIG_PATH = fileURLToPath(new URL('./default.yaml', import.meta.url));

/** `gateways.public.routes[3].match.path` from zod's path array. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(root)' : out;
}

function describe(issue: z.core.$ZodIssue): string {
  return `${formatPath(issue.path)}: ${issueMessage(issue)}`;
}

/** Validates against the schema of `composition` (the built-in capabilities by default). */
export function validateConfig(raw: unknown, source = '(inline)', composition: Composition = defaultComposition()): PassgateConfig {
  const result = composition.schema.safeParse(raw ?? {});
  if (!result.success) throw new ConfigError(source, result.error.issues.map(describe));
  const config = result.data;
  const problems: string[] = [];
  for (const [gwName, gw] of Object.entries(config.gateways)) {
    gw.routes.forEach((r, i) => {
      const path = r.match?.path;
      const text = path === undefined ? undefined : 'exact' in path ? path.exact : 'prefix' in path ? path.prefix : undefined;
      const problem = text === undefined ? undefined : pathPredicateProblem(text);
      if (problem !== undefined) problems.push(`gateways.${gwName}.routes[${i}].match.path.${path !== undefined && 'exact' in path ? 'exact' : 'prefix'}: ${problem}`);
    });
    const chains = gw.routes.map((r, i) => ({ path: `gateways.${gwName}.routes[${i}]`, stages: r.stages }));
    if (gw.defaultRoute) chains.push({ path: `gateways.${gwName}.defaultRoute`, stages: gw.defaultRoute.stages });
    for (const chain of chains) {
      chain.stages.forEach((stage, i) => {
        const def = composition.stageTypes.get(String(stage.type))?.definition;
        for (const message of def?.validate?.(stage, config) ?? []) problems.push(`${chain.path}.stages[${i}]: ${message}`);
      });
    }
  }
  if (problems.length > 0) throw new ConfigError(source, problems);
  return config;
}

export function parseConfigText(text: string, source: string, composition?: Composition): PassgateConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => `YAML ${e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : ''}: ${e.message.split('\n')[0]}`),
    );
  }
  return validateConfig(doc.toJS({ maxAliasCount: 100 }), source, composition);
}

export function loadConfigFile(path: string, composition?: Composition): PassgateConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read the file: ${(err as Error).message}`]);
  }
  return parseConfigText(text, path, composition);
}

export interface ConfigChoice {
  readonly path: string;
  /** True when this is the embedded development config (demo users, generated key). */
  readonly embedded: boolean;
}

/**
 * `--config PATH`, else PASSGATE_CONFIG, else (only when `dev` was asked for
 * explicitly) the embedded development config. Without any of them it is an
 * error: a typo in a flag must never start a service on demo users.
 */
export function resolveConfigPath(opts: { config?: string | undefined; dev?: boolean | undefined }, env: NodeJS.ProcessEnv): ConfigChoice {
  if (opts.config !== undefined) {
    if (opts.config === '' || opts.config.startsWith('-')) throw new ConfigError('--config', ['--config needs a file path']);
    return { path: opts.config, embedded: false };
  }
  const fromEnv = env['PASSGATE_CONFIG'];
  if (fromEnv) return { path: fromEnv, embedded: false };
  if (opts.dev) return { path: DEFAULT_CONFIG_PATH, embedded: true };
  throw new ConfigError('(no config)', [
    'no config given: pass --config FILE or set PASSGATE_CONFIG; --dev runs the embedded development config (demo users, generated key)',
  ]);
}
