/**
 * Loads everything the offline manifest checks look at: the rendered kustomize
 * overlays, the rendered istio/ kustomization, the mesh config files, the wasm build
 * manifest and the wasm filter sources. No cluster is involved: `kubectl kustomize`
 * only renders.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { readBuildManifest, ROOT, type BuiltModule } from '../scripts/package-wasm.mjs';

export { ROOT };

/** A Kubernetes object as rendered: only the envelope is typed, the rest is read loosely. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
}

/** Parses every YAML document of a file; a syntax error throws naming the file and line. */
export function parseYamlDocs(text: string, source: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true })) {
    if ('errors' in doc && doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const where = e.linePos?.[0] ? ` line ${e.linePos[0].line}` : '';
      throw new Error(`${source}${where}: ${e.message.split('\n')[0]}`);
    }
    const value = doc.toJS({ maxAliasCount: 100 });
    if (value !== null && value !== undefined) out.push(value as K8sObject);
  }
  return out;
}

export const KUBECTL = process.env.KUBECTL ?? 'kubectl';

/** `kubectl kustomize DIR`; a missing kubectl is a clear error, never a skipped check. */
export function renderKustomize(dir: string, kubectl = KUBECTL): K8sObject[] {
  let text: string;
  try {
    text = execFileSync(kubectl, ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 32 << 20 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error(
        `kubectl not found (tried "${kubectl}"): the manifest tests render kustomizations with \`kubectl kustomize\`. ` +
          'Install it (Debian: apt-get install kubernetes-client) or set KUBECTL=/path/to/kubectl.',
      );
    }
    throw new Error(`kubectl kustomize ${dir} failed: ${String(e.stderr ?? e.message).trim()}`);
  }
  return parseYamlDocs(text, `kubectl kustomize ${dir}`);
}

/**
 * The pluginConfig keys each filter accepts, read from its source (`const KEYS ... = [...]`
 * in wasm-filters/assembly/<name>/index.ts), so a key renamed in the filter shows up here.
 * A filter whose source or KEYS list cannot be found is an error, not an unchecked filter.
 */
export function readWasmConfigKeys(assemblyDir = join(ROOT, 'wasm-filters/assembly')): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const name of ['sanitize', 'trace']) {
    const path = join(assemblyDir, name, 'index.ts');
    if (!existsSync(path)) throw new Error(`${path} is missing: the ${name} filter's pluginConfig keys are read from it`);
    const m = /const KEYS[^=]*=\s*\[([^\]]*)\]/.exec(readFileSync(path, 'utf8'));
    const keys = m ? [...m[1]!.matchAll(/"([^"]+)"/g)].map((x) => x[1]!) : [];
    if (keys.length === 0) throw new Error(`${path}: no \`const KEYS = ["..."]\` list of pluginConfig keys found; keep that declaration so the manifest checks can read it`);
    out[name] = keys;
  }
  return out;
}

/** Everything the checks need, in plain data, so tests can mutate deep copies. */
export interface Bundle {
  overlays: Record<string, K8sObject[]>;
  istio: K8sObject[];
  operator: K8sObject;
  istiodValues: any;
  /** wasm-filters/build, each module verified against manifest.json (package-wasm's reader). */
  wasm: Record<string, BuiltModule>;
  wasmKeys: Record<string, string[]>;
}

export const OVERLAYS = ['dev', 'prod'] as const;

export function loadBundle(): Bundle {
  const overlays: Record<string, K8sObject[]> = {};
  for (const o of OVERLAYS) overlays[o] = renderKustomize(join(ROOT, 'k8s/overlays', o));
  const operatorPath = join(ROOT, 'istio/mesh/istio-operator.yaml');
  const valuesPath = join(ROOT, 'istio/mesh/istiod-values.yaml');
  const [operator] = parseYamlDocs(readFileSync(operatorPath, 'utf8'), operatorPath);
  const [istiodValues] = parseYamlDocs(readFileSync(valuesPath, 'utf8'), valuesPath);
  if (!operator) throw new Error(`${operatorPath} is empty`);
  return {
    overlays,
    istio: renderKustomize(join(ROOT, 'istio')),
    operator,
    istiodValues,
    wasm: readBuildManifest(),
    wasmKeys: readWasmConfigKeys(),
  };
}
