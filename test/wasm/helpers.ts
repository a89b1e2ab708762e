// Shared test helpers: built modules, a request template, and a tiny Wasm assembler for
// hand-crafted modules (strict-linking and trap tests).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { buildDir } from "../../wasm-filters/host/built.js";
import type { HeaderList } from "../../wasm-filters/host/pairs.js";
import { PluginLoadError } from "../../wasm-filters/host/plugin.js";

let buildTried = false;

/** The built module; builds once (npm run build:wasm) when it is missing. */
export function built(name: "sanitize" | "trace" | "passthrough"): Buffer {
  const file = join(buildDir, `${name}.wasm`);
  if (!existsSync(file) && !buildTried) {
    buildTried = true;
    try {
      execFileSync(process.execPath, [join(buildDir, "..", "scripts", "build.mjs")], { stdio: "pipe" });
    } catch (e) {
      const err = e as { stderr?: Buffer };
      throw new Error(`${file} is missing and \`npm run build:wasm\` failed:\n${err.stderr?.toString() ?? String(e)}`);
    }
  }
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: run \`npm run build:wasm\` before these tests (\`npm test\` does it)`);
  }
  return readFileSync(file);
}

export const BASE: HeaderList = [
  [":method", "GET"],
  [":scheme", "https"],
  [":authority", "api.example.com"],
  [":path", "/v1/things?x=1"],
  ["user-agent", "test/1.0"],
  ["accept", "*/*"],
  ["x-request-id", "7c9e6679-7425-40de-944b-e07fc1f90ae7"],
];

export function req(...extra: Array<[string, string]>): HeaderList {
  return [...BASE.map(([k, v]): [string, string] => [k, v]), ...extra];
}

export function values(h: HeaderList | null, name: string): string[] {
  return (h ?? []).filter(([k]) => k === name).map(([, v]) => v);
}

export function has(h: HeaderList | null, name: string): boolean {
  return values(h, name).length > 0;
}

/** Loading must fail as Envoy refuses a plugin whose on_configure returned false, saying why. */
export async function assertConfigRefused(loading: Promise<unknown>, why: RegExp): Promise<void> {
  await assert.rejects(loading, (e: unknown) => {
    assert.ok(e instanceof PluginLoadError, `expected PluginLoadError, got ${String(e)}`);
    assert.equal(e.code, "CONFIGURE_FAILED");
    assert.match(e.message, why);
    return true;
  });
}

// ---- tiny Wasm assembler -----------------------------------------------------------------

const VT: Record<string, number> = { i: 0x7f, I: 0x7e, f: 0x7d, F: 0x7c };

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
function str(s: string): number[] {
  const b = [...Buffer.from(s, "utf8")];
  return [...uleb(b.length), ...b];
}
function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}
function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

export interface RawFunc { sig: string; body: number[]; export?: string }
export interface RawModule {
  imports?: Array<{ module: string; name: string; sig: string }>;
  funcs?: RawFunc[];
  memory?: boolean;
}

/** Signatures "params:results" with i/I/f/F. Function bodies are raw opcodes (no locals). */
export function assemble(m: RawModule): Uint8Array {
  const sigs: string[] = [];
  const typeOf = (s: string): number => {
    let i = sigs.indexOf(s);
    if (i < 0) { sigs.push(s); i = sigs.length - 1; }
    return i;
  };
  const imports = m.imports ?? [];
  const funcs = m.funcs ?? [];
  const importEntries = imports.map((im) => [...str(im.module), ...str(im.name), 0, ...uleb(typeOf(im.sig))]);
  const funcTypes = funcs.map((f) => uleb(typeOf(f.sig)));
  const types = sigs.map((s) => {
    const [p = "", r = ""] = s.split(":");
    return [0x60, ...uleb(p.length), ...[...p].map((c) => VT[c]!), ...uleb(r.length), ...[...r].map((c) => VT[c]!)];
  });
  const exports: number[][] = [];
  funcs.forEach((f, i) => { if (f.export) exports.push([...str(f.export), 0, ...uleb(imports.length + i)]); });
  if (m.memory !== false) exports.push([...str("memory"), 2, 0]);
  const code = funcs.map((f) => { const body = [0, ...f.body, 0x0b]; return [...uleb(body.length), ...body]; });
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...(imports.length ? section(2, vec(importEntries)) : []),
    ...section(3, vec(funcTypes)),
    ...(m.memory !== false ? section(5, vec([[0x00, 0x01]])) : []),
    ...section(7, vec(exports)),
    ...section(10, vec(code)),
  ];
  return new Uint8Array(bytes);
}

export const I32_CONST = (n: number): number[] => [0x41, ...sleb(n)];
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
}
export const UNREACHABLE = [0x00];
export const CALL = (i: number): number[] => [0x10, ...uleb(i)];
export const DROP = [0x1a];

/** The smallest module Envoy accepts: marker, malloc, memory. */
export function minimalFuncs(): RawFunc[] {
  return [
    { sig: ":", body: [], export: "proxy_abi_version_0_2_1" },
    { sig: "i:i", body: I32_CONST(1024), export: "malloc" },
  ];
}
