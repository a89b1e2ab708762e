#!/usr/bin/env node
// `npm run wasm:pin`: packages the built modules (package-wasm.mjs) and writes each
// module's SHA-256 and the image reference pinned by manifest digest into
// istio/wasm/wasmplugins.yaml (only those two fields; comments and the rest stay).
// The WasmPlugin is matched to its module by the label passgate.io/module.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ROOT, packageAll } from './package-wasm.mjs';

export const PLUGINS_FILE = join(ROOT, 'istio/wasm/wasmplugins.yaml');
export const DEFAULT_REPOSITORY = 'registry.example.com/passgate/wasm';

/** Returns the new text of the WasmPlugin file; throws naming a plugin without a module. */
export function pinText(text, images, repository = DEFAULT_REPOSITORY) {
  const docs = parseAllDocuments(text);
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`wasmplugins.yaml: ${doc.errors[0].message}`);
    if (doc.get('kind') !== 'WasmPlugin') continue;
    const name = doc.getIn(['metadata', 'labels', 'passgate.io/module']);
    const plugin = doc.getIn(['metadata', 'name']);
    const image = images[name];
    if (!image) {
      throw new Error(`WasmPlugin ${plugin}: label passgate.io/module "${name}" names no built module (have: ${Object.keys(images).join(', ')})`);
    }
    doc.setIn(['spec', 'sha256'], image.moduleDigest.replace(/^sha256:/, ''));
    doc.setIn(['spec', 'url'], `oci://${repository}/${name}@${image.manifestDigest}`);
  }
  return docs.map((d) => d.toString({ lineWidth: 0, flowCollectionPadding: false })).join('');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const images = packageAll();
    const repository = process.env.PASSGATE_WASM_REPOSITORY || DEFAULT_REPOSITORY;
    const before = readFileSync(PLUGINS_FILE, 'utf8');
    const after = pinText(before, images, repository);
    writeFileSync(PLUGINS_FILE, after);
    console.log(`${before === after ? 'unchanged' : 'pinned'}: ${PLUGINS_FILE}`);
    for (const [name, i] of Object.entries(images)) console.log(`  ${name}: module ${i.moduleDigest} image ${i.manifestDigest}`);
  } catch (err) {
    console.error(`wasm:pin: ${err.message}`);
    process.exit(1);
  }
}
