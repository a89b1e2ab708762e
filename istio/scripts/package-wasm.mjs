#!/usr/bin/env node
// Packages each module from wasm-filters/build/manifest.json as an OCI image layout
// (dist/wasm-oci/<name>/: oci-layout, index.json, blobs/sha256/...) in the *oci*
// variant of the Wasm image spec that Istio's image fetcher reads
// (istio/istio pkg/wasm/imagefetcher.go, extractOCIArtifactImage): config media type
// application/vnd.module.wasm.config.v1+json and EXACTLY two layers, the runtime config
// (same media type) and the module (application/vnd.module.wasm.content.layer.v1+wasm,
// stored raw, uncompressed). A single-layer image is refused by Istio ("number of
// layers must be 2"). Output is byte-for-byte deterministic (no timestamps), so the
// manifest digest pinned in istio/wasm/wasmplugins.yaml can be re-derived offline.
//
// Push with any OCI tool, e.g.
//   oras cp --from-oci-layout dist/wasm-oci/sanitize:0.1.0 registry.example.com/passgate/wasm/sanitize:0.1.0
//   skopeo copy oci:dist/wasm-oci/sanitize:0.1.0 docker://registry.example.com/passgate/wasm/sanitize:0.1.0
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BUILD_DIR = join(ROOT, 'wasm-filters/build');
export const OUT_DIR = join(ROOT, 'dist/wasm-oci');

export const MEDIA = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  wasmConfig: 'application/vnd.module.wasm.config.v1+json',
  wasmLayer: 'application/vnd.module.wasm.content.layer.v1+wasm',
};

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

/** Reads wasm-filters/build/manifest.json and checks each module against it. */
export function readBuildManifest(buildDir = BUILD_DIR) {
  const path = join(buildDir, 'manifest.json');
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`npm run build:wasm\` first`);
  }
  const manifest = JSON.parse(readFileSync(path, 'utf8'));
  const modules = {};
  for (const [name, entry] of Object.entries(manifest)) {
    const bytes = readFileSync(join(buildDir, entry.file));
    const digest = sha256(bytes);
    if (digest !== entry.sha256) {
      throw new Error(`${join(buildDir, entry.file)}: sha256 ${digest} differs from manifest.json (${entry.sha256}); rebuild with \`npm run build:wasm\``);
    }
    modules[name] = { ...entry, content: bytes };
  }
  return modules;
}

/**
 * Builds the image in memory: returns the blobs (digest -> bytes), the manifest and
 * index documents and their digests. Pure, so tests and wasm:pin share it.
 */
export function buildImage(name, wasm, version) {
  const blobs = new Map();
  const put = (bytes) => {
    const d = sha256(bytes);
    blobs.set(d, bytes);
    return { digest: `sha256:${d}`, size: bytes.length };
  };
  const runtimeConfig = Buffer.from(
    JSON.stringify({ type: 'envoy_proxy', abiVersions: ['v0.2.1'], config: { root_ids: [] } }),
  );
  const cfg = put(runtimeConfig);
  const layer = put(wasm);
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.wasmConfig, ...cfg },
    layers: [
      { mediaType: MEDIA.wasmConfig, ...cfg, annotations: { 'org.opencontainers.image.title': 'runtime-config.json' } },
      { mediaType: MEDIA.wasmLayer, ...layer, annotations: { 'org.opencontainers.image.title': `${name}.wasm` } },
    ],
    annotations: {
      'org.opencontainers.image.title': `passgate-${name}`,
      'org.opencontainers.image.version': version,
      'org.opencontainers.image.source': 'passgate/wasm-filters',
    },
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const man = put(manifestBytes);
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [{ mediaType: MEDIA.manifest, ...man, annotations: { 'org.opencontainers.image.ref.name': version } }],
  };
  return { blobs, manifest, manifestDigest: man.digest, moduleDigest: layer.digest, index };
}

/** Writes one OCI image layout directory for the image. */
export function writeLayout(dir, image) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'blobs/sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  for (const [digest, bytes] of image.blobs) writeFileSync(join(dir, 'blobs/sha256', digest), bytes);
  writeFileSync(join(dir, 'index.json'), JSON.stringify(image.index));
}

export function packageVersion() {
  return JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
}

/** Packages every built module; returns { name: { dir, manifestDigest, moduleDigest, tag } }. */
export function packageAll({ buildDir = BUILD_DIR, outDir = OUT_DIR, version = packageVersion() } = {}) {
  const modules = readBuildManifest(buildDir);
  const result = {};
  for (const [name, mod] of Object.entries(modules)) {
    const image = buildImage(name, mod.content, version);
    const dir = join(outDir, name);
    writeLayout(dir, image);
    result[name] = { dir, tag: version, manifestDigest: image.manifestDigest, moduleDigest: image.moduleDigest };
  }
  return result;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const out = packageAll();
    for (const [name, r] of Object.entries(out)) {
      console.log(`${name}: ${r.dir} (tag ${r.tag}) manifest ${r.manifestDigest} module ${r.moduleDigest}`);
    }
  } catch (err) {
    console.error(`package:wasm: ${err.message}`);
    process.exit(1);
  }
}
