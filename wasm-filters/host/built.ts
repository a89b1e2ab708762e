// Locates the modules `npm run build:wasm` produces.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const buildDir = join(dirname(fileURLToPath(import.meta.url)), "..", "build");

/** Reads build/<name>.wasm, with a clear error when it has not been built. */
export function loadBuiltFilter(name: "sanitize" | "trace" | "passthrough"): Buffer {
  const file = join(buildDir, `${name}.wasm`);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: run \`npm run build:wasm\` first (npm test does it for you)`);
  }
  return readFileSync(file);
}
