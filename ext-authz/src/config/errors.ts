/**
 * The one error type for a configuration problem, wherever it is found
 * (YAML, schema, a stage's cross-check, a capability's prepare). Each line
 * names the key and says what is wrong, so an operator can fix the file
 * without reading code.
 */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid config ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}
