/**
 * Offline validation of k8s/ and istio/: every file parses, every kustomization
 * renders, every rendered object passes the Kubernetes/Istio schemas, and the
 * cross-object checks in istio/checks hold. Each check is then shown to fail on a
 * deliberately broken in-memory copy, so a green run means something.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import { packageVersion } from '../../istio/scripts/package-wasm.mjs';
import { runAll, type CheckReport } from '../../istio/checks/checks.js';
import { loadBundle, parseYamlDocs, readWasmConfigKeys, renderKustomize, ROOT, type Bundle, type K8sObject } from '../../istio/checks/load.js';

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(f) ? [p] : [];
  });
}

const find = (objs: K8sObject[], kind: string, name: string): K8sObject => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`test setup: ${kind} ${name} not rendered`);
  return o;
};

describe('manifests (offline)', function () {
  this.timeout(60_000);
  let bundle: Bundle;
  let version: string;
  let baseline: CheckReport[];

  before(() => {
    bundle = loadBundle();
    version = packageVersion();
    baseline = runAll(bundle, version);
  });

  it('every YAML file under k8s/ and istio/ parses', () => {
    const files = [...yamlFiles(join(ROOT, 'k8s')), ...yamlFiles(join(ROOT, 'istio'))];
    assert.ok(files.length >= 15, `only ${files.length} files found`);
    for (const f of files) assert.doesNotThrow(() => parseYamlDocs(readFileSync(f, 'utf8'), relative(ROOT, f)), f);
  });

  it('a YAML syntax error names the file', () => {
    assert.throws(() => parseYamlDocs('a: [1,\n', 'broken.yaml'), /broken\.yaml/);
    assert.throws(() => parseYamlDocs('a: 1\na: 2\n', 'dup.yaml'), /dup\.yaml/);
  });

  it('the base config file validates with the real Passgate schema', () => {
    const path = join(ROOT, 'k8s/base/config/passgate.yaml');
    const cfg = parseConfigText(readFileSync(path, 'utf8'), path);
    assert.deepEqual(new Set(Object.values(cfg.gateways).map((g) => g.kind)), new Set(['app', 'public', 'secure', 'ssr', 'internal', 'egress']));
    assert.equal(cfg.gateways.secure?.trustXfcc, true);
  });

  it('kubectl kustomize renders both overlays and istio/', () => {
    for (const [name, objs] of Object.entries(bundle.overlays)) {
      const kinds = new Set(objs.map((o) => o.kind));
      for (const k of ['Namespace', 'ServiceAccount', 'ConfigMap', 'Deployment', 'Service', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'NetworkPolicy']) {
        assert.ok(kinds.has(k), `${name} renders no ${k}`);
      }
    }
    assert.ok(find(bundle.overlays.dev!, 'Deployment', 'passgate-redis'), 'dev has an in-cluster Redis');
    assert.equal(find(bundle.overlays.prod!, 'Service', 'passgate-redis').spec.type, 'ExternalName');
    const kinds = bundle.istio.map((o) => o.kind);
    for (const k of ['Gateway', 'VirtualService', 'AuthorizationPolicy', 'WasmPlugin', 'PeerAuthentication', 'ServiceEntry', 'DestinationRule', 'Sidecar']) {
      assert.ok(kinds.includes(k), `istio/ renders no ${k}`);
    }
    assert.equal(kinds.filter((k) => k === 'Gateway').length, 8, 'one Gateway per client kind and one per affiliate');
    for (const a of ['card-network', 'bank-partner']) {
      const own = bundle.istio.filter((o) => o.metadata.labels?.['passgate.io/affiliate'] === a).map((o) => o.kind).sort();
      assert.deepEqual(own, ['AuthorizationPolicy', 'AuthorizationPolicy', 'DestinationRule', 'DestinationRule', 'Gateway', 'ServiceEntry', 'VirtualService'], a);
      assert.ok(bundle.operator.spec.components.egressGateways.some((g: any) => g.name === `gw-egress-${a}`), `gw-egress-${a} in istio-operator.yaml`);
    }
  });

  it('kustomizations use only fields kustomize v2.0.3 understands (Debian kubernetes-client 1.20 can render them)', () => {
    const known = new Set(['apiVersion', 'kind', 'namespace', 'namePrefix', 'nameSuffix', 'commonLabels', 'commonAnnotations', 'resources', 'bases',
      'crds', 'configMapGenerator', 'secretGenerator', 'generatorOptions', 'patchesStrategicMerge', 'patchesJson6902', 'images', 'vars', 'configurations']);
    const files = [...yamlFiles(join(ROOT, 'k8s')), ...yamlFiles(join(ROOT, 'istio'))].filter((f) => /kustomization\.ya?ml$/.test(f));
    assert.ok(files.length >= 5, files.join(", ")); // k8s overlays, istio, k8s/monitoring
    for (const f of files) {
      const [k] = parseYamlDocs(readFileSync(f, 'utf8'), f) as any[];
      for (const key of Object.keys(k)) assert.ok(known.has(key), `${relative(ROOT, f)}: "${key}" is unknown to kustomize v2.0.3`);
      for (const g of [...(k.configMapGenerator ?? []), ...(k.secretGenerator ?? [])]) assert.equal(g.options, undefined, `${relative(ROOT, f)}: per-generator options need kustomize v3+`);
      for (const r of k.resources ?? []) assert.ok(/\.ya?ml$/.test(r), `${relative(ROOT, f)}: directory "${r}" under resources needs kustomize v2.1+; use bases`);
    }
  });

  it('a missing kubectl fails clearly instead of skipping', () => {
    assert.throws(() => renderKustomize(join(ROOT, 'istio'), '/nonexistent/kubectl'), /kubectl not found.*kubernetes-client/s);
  });

  it('only one @kubernetes-models/validate major is installed (mixing majors breaks validation)', () => {
    const out = execFileSync('npm', ['ls', '@kubernetes-models/validate', '--all', '--json'], { cwd: ROOT, encoding: 'utf8' });
    const majors = new Set<string>();
    const walk = (deps: Record<string, any> | undefined) => {
      for (const [name, d] of Object.entries(deps ?? {})) {
        if (name === '@kubernetes-models/validate' && d.version) majors.add(String(d.version).split('.')[0]!);
        walk(d.dependencies);
      }
    };
    walk(JSON.parse(out).dependencies);
    assert.equal(majors.size, 1, `majors: ${[...majors].join(', ')}`);
  });

  it('every check passes on the real manifests', () => {
    const failing = baseline.filter((r) => r.problems.length > 0);
    assert.deepEqual(failing, []);
    assert.ok(baseline.length >= 25);
  });

  // Each broken copy must be caught by the named check (and the message must say why).
  type Mutation = { name: string; report: string; expect: RegExp; apply: (b: Bundle) => void };
  const dev = (b: Bundle) => b.overlays.dev!;
  const dep = (b: Bundle) => find(dev(b), 'Deployment', 'passgate');
  const ctr = (b: Bundle) => dep(b).spec.template.spec.containers[0];
  const provider = (b: Bundle) => b.operator.spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc;
  const wp = (b: Bundle, n: string) => find(b.istio, 'WasmPlugin', `passgate-${n}`);
  const cm = (b: Bundle) => dev(b).find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('passgate-config'))!;
  const np = (b: Bundle) => find(dev(b), 'NetworkPolicy', 'passgate');
  const secureComp = (b: Bundle) => b.operator.spec.components.ingressGateways.find((g: any) => g.name === 'gw-secure');

  const mutations: Mutation[] = [
    { name: 'a wrong enum (tls.mode MUTUALX)', report: 'istio: schemas', expect: /tls\/mode must be equal to one of the allowed values/,
      apply: (b) => { find(b.istio, 'Gateway', 'secure').spec.servers[0].tls.mode = 'MUTUALX'; } },
    { name: 'a typo in apiVersion', report: 'istio: schemas', expect: /no schema for apiVersion networking\.istio\.io\/v1beta /,
      apply: (b) => { find(b.istio, 'Gateway', 'app').apiVersion = 'networking.istio.io/v1beta'; } },
    { name: 'a malformed WasmPlugin sha256', report: 'istio: schemas', expect: /sha256 must match pattern/,
      apply: (b) => { wp(b, 'sanitize').spec.sha256 = 'ABC'; } },
    { name: 'a named gRPC probe port (schema)', report: 'dev: schemas', expect: /readinessProbe\/grpc\/port must be integer/,
      apply: (b) => { ctr(b).readinessProbe.grpc.port = 'grpc-authz'; } },
    { name: 'a named gRPC probe port (probe check)', report: 'dev: probes', expect: /readinessProbe port "grpc-authz" must be a number/,
      apply: (b) => { ctr(b).readinessProbe.grpc.port = 'grpc-authz'; } },
    { name: 'an HTTP liveness probe instead of gRPC health', report: 'dev: probes', expect: /livenessProbe must be a grpc probe/,
      apply: (b) => { ctr(b).livenessProbe = { httpGet: { path: '/healthz', port: 9090 } }; } },
    { name: "a typo'd CUSTOM provider", report: 'istio: CUSTOM providers', expect: /provider "passgat" is not in meshConfig.*deny everything/,
      apply: (b) => { find(b.istio, 'AuthorizationPolicy', 'passgate-app').spec.provider.name = 'passgat'; } },
    { name: 'a stale module digest', report: 'istio: wasm digests', expect: /sha256 .* is not the built sanitize\.wasm.*wasm:pin/,
      apply: (b) => { wp(b, 'sanitize').spec.sha256 = b.wasm.trace!.sha256; } },
    { name: 'a module rebuilt without re-pinning', report: 'istio: wasm digests', expect: /passgate-sanitize: sha256 [0-9a-f]{64} is not the built sanitize\.wasm/,
      apply: (b) => { const m = b.wasm.sanitize!; m.content = Buffer.concat([m.content, Buffer.from([0])]); } },
    { name: 'an image url not pinned to the packaged digest', report: 'istio: wasm digests', expect: /is not pinned to the packaged image trace@sha256:/,
      apply: (b) => { wp(b, 'trace').spec.url = 'oci://registry.example.com/passgate/wasm/trace:latest'; } },
    { name: 'a WasmPlugin naming no built module', report: 'istio: wasm digests', expect: /"sanitise" names no module/,
      apply: (b) => { wp(b, 'sanitize').metadata.labels!['passgate.io/module'] = 'sanitise'; } },
    { name: 'an unknown pluginConfig key', report: 'istio: wasm config', expect: /pluginConfig key "internalHeaders" is unknown to the sanitize filter/,
      apply: (b) => { wp(b, 'sanitize').spec.pluginConfig.internalHeaders = ['x-passport']; } },
    { name: 'a filter whose pluginConfig keys are unknown', report: 'istio: wasm config', expect: /pluginConfig keys of filter "sanitize" are unknown/,
      apply: (b) => { delete b.wasmKeys.sanitize; } },
    { name: 'sanitize after authz (phase AUTHZ)', report: 'istio: wasm config', expect: /phase must be AUTHN/,
      apply: (b) => { wp(b, 'sanitize').spec.phase = 'AUTHZ'; } },
    { name: 'sanitize not stripping x-passport', report: 'istio: wasm config', expect: /lacks internal header x-passport/,
      apply: (b) => { wp(b, 'sanitize').spec.pluginConfig.removeRequestHeaders = []; } },
    { name: 'no provider timeout', report: 'mesh: provider settings', expect: /timeout is not set/,
      apply: (b) => { delete provider(b).timeout; } },
    { name: 'a provider timeout that is not a protobuf duration', report: 'mesh: provider settings', expect: /"500ms" is not a duration/,
      apply: (b) => { provider(b).timeout = '500ms'; } },
    { name: 'a provider without service', report: 'mesh: provider settings', expect: /service is not set/,
      apply: (b) => { delete provider(b).service; } },
    { name: 'fail-open provider', report: 'mesh: provider settings', expect: /failOpen must be false/,
      apply: (b) => { provider(b).failOpen = true; } },
    { name: 'statusOnError 403', report: 'mesh: provider settings', expect: /statusOnError must be "503"/,
      apply: (b) => { provider(b).statusOnError = '403'; } },
    { name: 'Helm values drifting from the IstioOperator', report: 'mesh: helm and istioctl agree', expect: /differs/,
      apply: (b) => { b.istiodValues.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.port = 9002; } },
    { name: 'a provider port the Service lacks', report: 'dev: provider target', expect: /port 9002 is not a port of Service passgate\/passgate/,
      apply: (b) => { provider(b).port = 9002; } },
    { name: 'a provider in the wrong namespace', report: 'prod: provider target', expect: /service default\/passgate is not among/,
      apply: (b) => { provider(b).service = 'passgate.default.svc.cluster.local'; } },
    { name: 'a Service port without protocol prefix', report: 'dev: service ports', expect: /name "authz" does not start with a protocol/,
      apply: (b) => { find(dev(b), 'Service', 'passgate').spec.ports[0].name = 'authz'; } },
    { name: 'a Service port targeting the wrong container port', report: 'dev: provider target', expect: /targets 9100 but Passgate listens on server.grpc.port 9001/,
      apply: (b) => { find(dev(b), 'Service', 'passgate').spec.ports[0].targetPort = 9100; } },
    { name: 'a named targetPort whose container port is not the gRPC port', report: 'dev: provider target', expect: /targets "grpc-authz" \(containerPort 9100\) but Passgate listens on server.grpc.port 9001/,
      apply: (b) => { find(dev(b), 'Service', 'passgate').spec.ports[0].targetPort = 'grpc-authz'; ctr(b).ports[0].containerPort = 9100; } },
    { name: 'a named targetPort no container declares', report: 'dev: service ports', expect: /no port targets 9001/,
      apply: (b) => { find(dev(b), 'Service', 'passgate').spec.ports[0].targetPort = 'grpc-authx'; } },
    { name: 'a Gateway selector with a typo', report: 'istio: gateway selectors', expect: /Gateway istio-gateways\/secure: selector .*gw-secur".* matches no gateway/,
      apply: (b) => { find(b.istio, 'Gateway', 'secure').spec.selector = { istio: 'gw-secur' }; } },
    { name: 'a WasmPlugin selecting no gateway', report: 'istio: gateway selectors', expect: /WasmPlugin istio-gateways\/passgate-trace: selector .* matches no gateway/,
      apply: (b) => { wp(b, 'trace').spec.selector.matchLabels = { 'passgate.io/wasm': 'on' }; } },
    { name: 'a gateway without its CUSTOM policy', report: 'istio: gateway selectors', expect: /gateway gw-ssr: 0 CUSTOM AuthorizationPolicies/,
      apply: (b) => { b.istio = b.istio.filter((o) => o.metadata.name !== 'passgate-ssr'); } },
    { name: 'a CUSTOM policy in another namespace than its gateway', report: 'istio: gateway selectors', expect: /AuthorizationPolicy istio-system\/passgate-public: selector .* no gateway deployment in namespace istio-system/,
      apply: (b) => { find(b.istio, 'AuthorizationPolicy', 'passgate-public').metadata.namespace = 'istio-system'; } },
    { name: 'health paths sent to ext_authz', report: 'istio: health excluded', expect: /passgate-app: every rule must exclude health paths/,
      apply: (b) => { find(b.istio, 'AuthorizationPolicy', 'passgate-app').spec.rules = [{}]; } },
    { name: 'the secure gateway without XFCC SANITIZE_SET', report: 'istio: mutual TLS', expect: /gateway gw-secure: serves MUTUAL TLS but .* SANITIZE_SET/,
      apply: (b) => { secureComp(b).k8s.podAnnotations = {}; } },
    { name: 'the secure gateway downgraded to SIMPLE TLS', report: 'istio: mutual TLS', expect: /no Gateway server uses tls\.mode MUTUAL/,
      apply: (b) => { find(b.istio, 'Gateway', 'secure').spec.servers[0].tls.mode = 'SIMPLE'; } },
    { name: 'a Gateway host Passgate does not select', report: 'istio: hosts in config', expect: /host shop\.example\.com is not in select\.hosts of the passgate "public" gateway/,
      apply: (b) => { find(b.istio, 'Gateway', 'public').spec.servers[0].hosts.push('shop.example.com'); } },
    { name: 'a route without timeout', report: 'istio: timeouts', expect: /VirtualService istio-gateways\/ssr: http\[0\] \(ssr-backend\) has no timeout/,
      apply: (b) => { delete find(b.istio, 'VirtualService', 'ssr').spec.http[0].timeout; } },
    { name: 'a DestinationRule without connect timeout', report: 'istio: timeouts', expect: /DestinationRule passgate\/passgate: .*connectTimeout is not set/,
      apply: (b) => { delete find(b.istio, 'DestinationRule', 'passgate').spec.trafficPolicy.connectionPool.tcp.connectTimeout; } },
    { name: 'a DestinationRule without outlier detection', report: 'istio: timeouts', expect: /DestinationRule apps\/partner-api: no outlierDetection/,
      apply: (b) => { delete find(b.istio, 'DestinationRule', 'partner-api').spec.trafficPolicy.outlierDetection; } },
    { name: 'a DestinationRule with no traffic policy at all', report: 'istio: timeouts', expect: /DestinationRule apps\/partner-api: no trafficPolicy/,
      apply: (b) => { delete find(b.istio, 'DestinationRule', 'partner-api').spec.trafficPolicy; } },
    { name: 'a NetworkPolicy that forgets the egress gateway', report: 'dev: network policy', expect: /gateway gw-egress .* cannot reach port 9001/,
      apply: (b) => { np(b).spec.ingress[0].from[0].podSelector.matchExpressions[0].values = ['app', 'public', 'secure', 'ssr', 'internal']; } },
    { name: 'a NetworkPolicy admitting whole namespaces', report: 'dev: network policy', expect: /admits whole namespaces on port 9001/,
      apply: (b) => { delete np(b).spec.ingress[0].from[0].podSelector; } },
    { name: 'a NetworkPolicy selecting other pods', report: 'dev: network policy', expect: /no NetworkPolicy selects the passgate pods/,
      apply: (b) => { np(b).spec.podSelector.matchLabels = { 'app.kubernetes.io/name': 'passgate-api' }; } },
    { name: 'a grace period shorter than the drain', report: 'dev: drain', expect: /preStop 3s \+ shutdownGraceMs 10000ms = 13000ms is not below terminationGracePeriodSeconds 10s/,
      apply: (b) => { dep(b).spec.template.spec.terminationGracePeriodSeconds = 10; } },
    { name: 'a preStop sleep eating the grace period', report: 'dev: drain', expect: /preStop 25s/,
      apply: (b) => { ctr(b).lifecycle.preStop.exec.command = ['/bin/sleep', '25']; } },
    { name: 'a longer shutdownGraceMs in the ConfigMap', report: 'dev: drain', expect: /shutdownGraceMs 28000ms/,
      apply: (b) => { cm(b).data['config.yaml'] = cm(b).data['config.yaml'].replace('shutdownGraceMs: 10000', 'shutdownGraceMs: 28000'); } },
    { name: 'an unknown key in the service config', report: 'dev: config', expect: /server: unknown key "shutdownGraceMS"/,
      apply: (b) => { cm(b).data['config.yaml'] = cm(b).data['config.yaml'].replace('shutdownGraceMs', 'shutdownGraceMS'); } },
    { name: 'an unknown stage type in the service config', report: 'dev: config', expect: /stages\[0\]/,
      apply: (b) => { cm(b).data['config.yaml'] = cm(b).data['config.yaml'].replace('stages: [allow]', 'stages: [alow]'); } },
    { name: '--config pointing outside the ConfigMap mount', report: 'dev: config', expect: /--config \/etc\/other\/config\.yaml is under no volumeMount/,
      apply: (b) => { ctr(b).args = ['--config', '/etc/other/config.yaml']; } },
    { name: 'a writable root filesystem', report: 'dev: hardening', expect: /readOnlyRootFilesystem must be true/,
      apply: (b) => { ctr(b).securityContext.readOnlyRootFilesystem = false; } },
    { name: 'root allowed', report: 'prod: hardening', expect: /runAsNonRoot must be true/,
      apply: (b) => { const d = find(b.overlays.prod!, 'Deployment', 'passgate'); delete d.spec.template.spec.securityContext.runAsNonRoot; delete d.spec.template.spec.containers[0].securityContext.runAsNonRoot; } },
    { name: 'no memory limit', report: 'dev: hardening', expect: /resources\.limits\.memory is not set/,
      apply: (b) => { delete ctr(b).resources.limits.memory; } },
    { name: 'no zone spread', report: 'dev: hardening', expect: /no topologySpreadConstraint on topology\.kubernetes\.io\/zone/,
      apply: (b) => { dep(b).spec.template.spec.topologySpreadConstraints = []; } },
    { name: 'an HPA targeting a missing Deployment', report: 'dev: references', expect: /scaleTargetRef Deployment\/passgte/,
      apply: (b) => { find(dev(b), 'HorizontalPodAutoscaler', 'passgate').spec.scaleTargetRef.name = 'passgte'; } },
    { name: 'a PDB selecting nothing', report: 'dev: references', expect: /PodDisruptionBudget passgate\/passgate: selector selects no/,
      apply: (b) => { find(dev(b), 'PodDisruptionBudget', 'passgate').spec.selector.matchLabels = { app: 'nope' }; } },
    { name: 'egress allowed to any host', report: 'istio: egress and traffic', expect: /no Sidecar with outboundTrafficPolicy REGISTRY_ONLY/,
      apply: (b) => { find(b.istio, 'Sidecar', 'default').spec.outboundTrafficPolicy.mode = 'ALLOW_ANY'; } },
    { name: 'no TLS origination for the external host', report: 'istio: egress and traffic', expect: /no DestinationRule originates TLS to api\.payments\.example\.net/,
      apply: (b) => { b.istio = b.istio.filter((o) => o.metadata.name !== 'payments-api-tls-origination'); } },
    { name: "an affiliate's host routed through another affiliate's gateway", report: 'istio: affiliate routing', expect: /card-network-via-egress: routes api\.cardnet\.example\.com \(affiliate card-network\) through Gateway istio-gateways\/egress-bank-partner/,
      apply: (b) => { find(b.istio, 'VirtualService', 'card-network-via-egress').spec.gateways = ['mesh', 'istio-gateways/egress-bank-partner']; } },
    { name: "mesh traffic for an affiliate sent to another affiliate's gateway Service", report: 'istio: affiliate routing', expect: /http\[0\] \(mesh-to-egress-gateway\) sends mesh traffic for api\.bank-partner\.example\.org to gw-egress-card-network/,
      apply: (b) => { find(b.istio, 'VirtualService', 'bank-partner-via-egress').spec.http[0].route[0].destination.host = 'gw-egress-card-network.istio-gateways.svc.cluster.local'; } },
    { name: "an affiliate's host also served by the shared egress gateway", report: 'istio: affiliate routing', expect: /Gateway istio-gateways\/egress: serves api\.cardnet\.example\.com of affiliate card-network/,
      apply: (b) => { find(b.istio, 'Gateway', 'egress').spec.servers[0].hosts.push('api.cardnet.example.com'); } },
    { name: 'an affiliate host with no VirtualService', report: 'istio: affiliate routing', expect: /affiliate bank-partner: no VirtualService routes api\.bank-partner\.example\.org/,
      apply: (b) => { b.istio = b.istio.filter((o) => o.metadata.name !== 'bank-partner-via-egress'); } },
    { name: 'an affiliate without its own egress gateway deployment', report: 'istio: affiliate routing', expect: /affiliate card-network: 0 egress gateways .* want exactly 1/,
      apply: (b) => { b.operator.spec.components.egressGateways = b.operator.spec.components.egressGateways.filter((g: any) => g.name !== 'gw-egress-card-network'); } },
    { name: 'a workload allowed by two affiliates without saying so', report: 'istio: affiliate principals', expect: /principal cluster\.local\/ns\/apps\/sa\/payouts is allowed by affiliates bank-partner .* and card-network/,
      apply: (b) => { find(b.istio, 'AuthorizationPolicy', 'egress-callers-card-network').spec.rules[0].from[0].source.principals.push('cluster.local/ns/apps/sa/payouts'); } },
    { name: 'a shared principal listed on one side only', report: 'istio: affiliate principals', expect: /principal cluster\.local\/ns\/apps\/sa\/checkout is allowed by affiliates bank-partner .* and card-network/,
      apply: (b) => { delete find(b.istio, 'AuthorizationPolicy', 'egress-callers-bank-partner').metadata.annotations!['passgate.io/shared-principals']; } },
    { name: 'an affiliate allowing every principal', report: 'istio: affiliate principals', expect: /principal "\*" is a wildcard/,
      apply: (b) => { find(b.istio, 'AuthorizationPolicy', 'egress-callers-card-network').spec.rules[0].from[0].source.principals = ['*']; } },
    { name: 'an affiliate without its Passgate profile', report: 'istio: affiliate profiles', expect: /affiliate bank-partner: Passgate config .* has no gateway "egress-bank-partner"/,
      apply: (b) => { cm(b).data['config.yaml'] = cm(b).data['config.yaml'].replace('egress-bank-partner:', 'egress-bank-partnr:'); } },
    { name: 'an affiliate profile authorizing a workload Istio does not admit', report: 'istio: affiliate profiles', expect: /gateway egress-card-network: authorize subjects lack spiffe:\/\/cluster\.local\/ns\/apps\/sa\/refunds/,
      apply: (b) => { find(b.istio, 'AuthorizationPolicy', 'egress-callers-card-network').spec.rules[0].from[0].source.principals.push('cluster.local/ns/apps/sa/refunds'); } },
    { name: 'mTLS PERMISSIVE', report: 'istio: egress and traffic', expect: /PeerAuthentication STRICT/,
      apply: (b) => { find(b.istio, 'PeerAuthentication', 'default').spec.mtls.mode = 'PERMISSIVE'; } },
  ];

  it('a Service port naming the gRPC container port passes like the number does', () => {
    const named = structuredClone(bundle);
    find(named.overlays.dev!, 'Service', 'passgate').spec.ports[0].targetPort = 'grpc-authz';
    const reports = runAll(named, version).filter((r) => r.problems.length > 0);
    assert.deepEqual(reports, []);
  });

  it('a wasm filter whose source lacks the KEYS list is an error, not an unchecked filter', () => {
    const dir = mkdtempSync(join(tmpdir(), 'passgate-keys-'));
    try {
      for (const name of ['sanitize', 'trace']) {
        mkdirSync(join(dir, name));
        writeFileSync(join(dir, name, 'index.ts'), 'const KEYS: Array<string> = ["a", "b"];\n');
      }
      assert.deepEqual(readWasmConfigKeys(dir), { sanitize: ['a', 'b'], trace: ['a', 'b'] });
      writeFileSync(join(dir, 'trace', 'index.ts'), 'const ALLOWED = ["a"];\n');
      assert.throws(() => readWasmConfigKeys(dir), /trace\/index\.ts: no `const KEYS/);
      rmSync(join(dir, 'trace'), { recursive: true });
      assert.throws(() => readWasmConfigKeys(dir), /trace\/index\.ts is missing/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const m of mutations) {
    it(`catches ${m.name}`, () => {
      const broken = structuredClone(bundle);
      m.apply(broken);
      const reports = runAll(broken, version);
      const report = reports.find((r) => r.name === m.report);
      assert.ok(report, `no report named ${m.report}`);
      assert.ok(
        report.problems.some((p) => m.expect.test(p)),
        `${m.report} did not report ${m.expect}; it said: ${JSON.stringify(report.problems)}`,
      );
    });
  }
});
