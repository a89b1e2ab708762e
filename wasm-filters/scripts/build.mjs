#!/usr/bin/env node
// Builds the proxy-wasm filters (AssemblyScript, ABI 0.2.1) into wasm-filters/build/
// and writes build/manifest.json { name: { file, bytes, sha256 } } for the Istio manifests.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const repo = join(root, "..");
const outDir = join(root, "build");
const MAX_BYTES = 16 * 1024; // size budget per module (issue 6)

const modules = ["sanitize", "trace", "passthrough"];

// Why these flags:
// -Oz / --noAssert: smallest module; --runtime minimal: frees memory (the stub runtime never
// does) and the filters call __collect() at the end of each stream;
// --use abort=...: our own abort, because Envoy registers no env.abort;
// --exportStart _initialize: WASI reactor style, Envoy calls _initialize after instantiation.
const abortFn = relative(repo, join(root, "assembly/abi/index")).split("\\").join("/") + "/abortHandler";
const common = [
  "-Oz", "--noAssert", "--runtime", "minimal", "--use", `abort=${abortFn}`,
  "--exportStart", "_initialize",
];

mkdirSync(outDir, { recursive: true });
const manifest = {};
let failed = false;
const rows = [];
for (const name of modules) {
  const entry = relative(repo, join(root, "assembly", name, "index.ts"));
  const outFile = join(outDir, `${name}.wasm`);
  const { error, stderr } = await asc.main(
    // --baseDir: paths (and the abort function's internal name) resolve from the repo root
    // whatever the current directory is.
    [entry, "-o", relative(repo, outFile), "--baseDir", repo, ...common],
    { stdout: process.stdout, stderr: process.stderr },
  );
  if (error) {
    console.error(`build:wasm: compiling ${entry} failed: ${error.message}\n${stderr.toString()}`);
    process.exit(1);
  }
  const bytes = readFileSync(outFile);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  manifest[name] = { file: `${name}.wasm`, bytes: bytes.length, sha256 };
  rows.push(`${name.padEnd(12)} ${String(bytes.length).padStart(6)} B  sha256:${sha256}`);
  if (bytes.length >= MAX_BYTES) {
    console.error(`build:wasm: ${name}.wasm is ${bytes.length} bytes, over the ${MAX_BYTES}-byte budget; shrink the filter`);
    failed = true;
  }
}
writeFileSync(join(outDir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(rows.join("\n"));
console.log(`wrote ${relative(repo, join(outDir, "manifest.json"))}`);
if (failed) process.exit(1);
