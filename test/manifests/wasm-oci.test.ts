/**
 * `npm run package:wasm` / `npm run wasm:pin`: the OCI image layout is what Istio's
 * image fetcher reads (oci variant: wasm config media type, exactly two layers, the
 * module stored raw), every descriptor points at a blob whose name is its SHA-256,
 * and pinning writes the module digest (not the manifest digest) into sha256.
 * Uses a tiny module built here, so it does not depend on the filters' build.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { buildImage, MEDIA, packageAll, writeLayout } from '../../istio/scripts/package-wasm.mjs';
import { pinText } from '../../istio/scripts/pin-wasm.mjs';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
// A valid, empty wasm module: magic + version.
const MODULE = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

describe('wasm OCI packaging', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'passgate-oci-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('builds the oci variant Istio accepts: wasm config type, two layers, raw module', () => {
    const img = buildImage('sanitize', MODULE, '1.2.3');
    assert.equal(img.manifest.mediaType, MEDIA.manifest);
    assert.equal(img.manifest.config.mediaType, 'application/vnd.module.wasm.config.v1+json');
    assert.equal(img.manifest.layers.length, 2, "Istio's extractOCIArtifactImage wants exactly 2 layers");
    const wasmLayers = img.manifest.layers.filter((l) => l.mediaType === 'application/vnd.module.wasm.content.layer.v1+wasm');
    assert.equal(wasmLayers.length, 1);
    assert.equal(wasmLayers[0]!.digest, `sha256:${sha(MODULE)}`);
    assert.equal(wasmLayers[0]!.size, MODULE.length);
    assert.equal(img.moduleDigest, `sha256:${sha(MODULE)}`);
    const cfg = JSON.parse(img.blobs.get(img.manifest.config.digest.slice(7))!.toString());
    assert.equal(cfg.type, 'envoy_proxy');
    assert.equal(img.index.manifests[0]!.annotations!['org.opencontainers.image.ref.name'], '1.2.3');
  });

  it('is deterministic: same module, same manifest digest', () => {
    assert.equal(buildImage('trace', MODULE, '1').manifestDigest, buildImage('trace', MODULE, '1').manifestDigest);
    assert.notEqual(buildImage('trace', MODULE, '1').manifestDigest, buildImage('trace', Buffer.concat([MODULE, Buffer.from([0])]), '1').manifestDigest);
  });

  it('writes an OCI image layout whose blobs match their digests', () => {
    const img = buildImage('trace', MODULE, '0.0.1');
    writeLayout(dir, img);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
    assert.equal(index.schemaVersion, 2);
    const blob = (digest: string) => {
      const [alg, hex] = digest.split(':');
      assert.equal(alg, 'sha256');
      const bytes = readFileSync(join(dir, 'blobs/sha256', hex!));
      assert.equal(sha(bytes), hex, `blob ${digest} content does not hash to its name`);
      return bytes;
    };
    const manDesc = index.manifests[0];
    const manBytes = blob(manDesc.digest);
    assert.equal(manBytes.length, manDesc.size);
    const manifest = JSON.parse(manBytes.toString());
    for (const d of [manifest.config, ...manifest.layers]) assert.equal(blob(d.digest).length, d.size);
    assert.ok(blob(`sha256:${sha(MODULE)}`).equals(MODULE));
  });

  it('packageAll packages the build and refuses a module whose bytes differ from manifest.json', () => {
    const buildDir = join(dir, 'build');
    mkdirSync(buildDir);
    writeFileSync(join(buildDir, 'x.wasm'), MODULE);
    const entry = { file: 'x.wasm', bytes: MODULE.length, sha256: sha(MODULE) };
    writeFileSync(join(buildDir, 'manifest.json'), JSON.stringify({ x: entry }));
    const out = packageAll({ buildDir, outDir: join(dir, 'out'), version: '9.9.9' });
    assert.ok(existsSync(join(out.x!.dir, 'index.json')));
    assert.equal(out.x!.moduleDigest, `sha256:${sha(MODULE)}`);
    writeFileSync(join(buildDir, 'manifest.json'), JSON.stringify({ x: { ...entry, sha256: '0'.repeat(64) } }));
    assert.throws(() => packageAll({ buildDir, outDir: join(dir, 'out'), version: '9.9.9' }), /differs from manifest\.json.*build:wasm/);
    assert.throws(() => packageAll({ buildDir: join(dir, 'none'), outDir: join(dir, 'out') }), /manifest\.json is missing.*npm run build:wasm/);
  });

  it('wasm:pin writes the module sha256 and the digest-pinned url, keeping comments', () => {
    const text = [
      '# keep me',
      'apiVersion: extensions.istio.io/v1alpha1',
      'kind: WasmPlugin',
      'metadata: { name: p, labels: { passgate.io/module: sanitize } }',
      'spec:',
      '  url: oci://x/sanitize:pending',
      '  sha256: "00"',
      '  pluginConfig: { removeRequestHeaders: [x-passport] }',
      '',
    ].join('\n');
    const img = buildImage('sanitize', MODULE, '1');
    const out = pinText(text, { sanitize: img }, 'reg.example/wasm');
    assert.match(out, /# keep me/);
    const doc = parseAllDocuments(out)[0]!.toJS();
    assert.equal(doc.spec.sha256, sha(MODULE));
    assert.notEqual(doc.spec.sha256, img.manifestDigest.slice(7), 'sha256 is the module digest, not the manifest digest');
    assert.equal(doc.spec.url, `oci://reg.example/wasm/sanitize@${img.manifestDigest}`);
    assert.deepEqual(doc.spec.pluginConfig, { removeRequestHeaders: ['x-passport'] });
    assert.throws(() => pinText(text, { trace: img }), /names no built module/);
  });
});
