/**
 * Offline checks of the Kubernetes and Istio manifests. Each check is a pure function
 * over plain objects that returns a list of problems ("" never; an empty list means
 * fine), so tests can feed it deliberately broken copies. Schemas (kubernetes-models)
 * catch types, enums and required fields; the rest here are the cross-object rules a
 * schema cannot see: provider names, selectors, digests, ports, drain timing.
 */
import * as k8sModels from 'kubernetes-models';
import * as istioModels from '@kubernetes-models/istio';
import { parseConfigText } from '../../ext-authz/src/config/load.js';
import type { PassgateConfig } from '../../ext-authz/src/config/schema.js';
import { buildImage, type BuiltModule } from '../scripts/package-wasm.mjs';
import { checkAffiliatePrincipals, checkAffiliateProfiles, checkAffiliateRouting } from './affiliates.js';
import type { Bundle, K8sObject } from './load.js';
import { gatewayComponents } from './gateways.js';


type Problems = string[];
const id = (o: K8sObject) => `${o.kind} ${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name}`;
const ofKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind);

// ---------------------------------------------------------------------------------
// Schemas

type ModelClass = { new (data: unknown): { validate(): void }; apiVersion: string; kind: string };
let registry: Map<string, ModelClass> | undefined;

/** apiVersion/kind -> model class, collected from both model packages. */
function modelRegistry(): Map<string, ModelClass> {
  if (registry) return registry;
  registry = new Map();
  const visit = (v: unknown, depth: number) => {
    if (typeof v === 'function' && typeof (v as any).apiVersion === 'string' && typeof (v as any).kind === 'string') {
      registry!.set(`${(v as any).apiVersion}/${(v as any).kind}`, v as ModelClass);
    } else if (v && typeof v === 'object' && depth < 3) {
      for (const child of Object.values(v)) visit(child, depth + 1);
    }
  };
  visit(k8sModels, 0);
  visit(istioModels, 0);
  return registry;
}

/** Every object validates against the Kubernetes or Istio OpenAPI schema of its kind. */
export function checkSchemas(objs: K8sObject[]): Problems {
  const problems: Problems = [];
  for (const o of objs) {
    const Model = modelRegistry().get(`${o.apiVersion}/${o.kind}`);
    if (!Model) {
      problems.push(`${id(o)}: no schema for apiVersion ${o.apiVersion} kind ${o.kind} (typo in apiVersion or kind?)`);
      continue;
    }
    try {
      new Model(structuredClone(o)).validate();
    } catch (err) {
      problems.push(`${id(o)}: schema: ${(err as Error).message}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------
// Mesh config: extension provider

export interface GrpcProvider {
  name: string;
  envoyExtAuthzGrpc?: { service?: string; port?: number; timeout?: string; failOpen?: boolean; statusOnError?: string };
}

export function meshProviders(operator: K8sObject): GrpcProvider[] {
  return (operator.spec?.meshConfig?.extensionProviders ?? []) as GrpcProvider[];
}

const DURATION = /^\d+(\.\d+)?s$/; // protobuf JSON Duration as Istio parses mesh config

/** Providers are gRPC ext_authz with an explicit timeout, fail closed, 503 on error. */
export function checkProviderSettings(operator: K8sObject): Problems {
  const problems: Problems = [];
  const providers = meshProviders(operator);
  if (providers.length === 0) problems.push('istio-operator: meshConfig.extensionProviders is empty');
  for (const p of providers) {
    const g = p.envoyExtAuthzGrpc;
    if (!g) {
      problems.push(`provider ${p.name}: not an envoyExtAuthzGrpc provider`);
      continue;
    }
    if (g.timeout === undefined) problems.push(`provider ${p.name}: timeout is not set (Istio would wait 600 s)`);
    else if (!DURATION.test(g.timeout)) problems.push(`provider ${p.name}: timeout "${g.timeout}" is not a duration like "0.5s"`);
    if (g.failOpen !== false) problems.push(`provider ${p.name}: failOpen must be false (fail closed)`);
    if (g.statusOnError !== '503') problems.push(`provider ${p.name}: statusOnError must be "503" so outages are not 403s`);
    if (typeof g.port !== 'number') problems.push(`provider ${p.name}: port must be a number`);
    if (!g.service) problems.push(`provider ${p.name}: service is not set (e.g. passgate.passgate.svc.cluster.local)`);
  }
  return problems;
}

/** The istioctl and Helm variants of the mesh config declare the same providers. */
export function checkMeshVariantsAgree(operator: K8sObject, istiodValues: any): Problems {
  const a = JSON.stringify(meshProviders(operator));
  const b = JSON.stringify(istiodValues?.meshConfig?.extensionProviders ?? []);
  return a === b ? [] : ['istiod-values.yaml meshConfig.extensionProviders differs from istio-operator.yaml: keep them identical'];
}

/** Every CUSTOM AuthorizationPolicy names a provider that exists (a missing one is deny-all). */
export function checkCustomProviders(istio: K8sObject[], operator: K8sObject): Problems {
  const names = new Set(meshProviders(operator).map((p) => p.name));
  const problems: Problems = [];
  for (const ap of ofKind(istio, 'AuthorizationPolicy')) {
    if (ap.spec?.action !== 'CUSTOM') continue;
    const name = ap.spec?.provider?.name;
    if (!names.has(name)) problems.push(`${id(ap)}: provider "${name}" is not in meshConfig.extensionProviders (${[...names].join(', ')}); Istio would deny everything`);
  }
  return problems;
}

/** Accepts "ns/host", "host.ns.svc.cluster.local" or "host.ns.svc"; returns [ns, name]. */
function serviceRef(service: string): [string, string] | undefined {
  const slash = /^([a-z0-9-]+)\/([a-z0-9-]+)(\.[a-z0-9.-]+)?$/.exec(service);
  if (slash) return [slash[1]!, slash[2]!];
  const fqdn = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$/.exec(service);
  if (fqdn) return [fqdn[2]!, fqdn[1]!];
  return undefined;
}

/** The provider's service and port are a Service port named grpc-* that reaches Passgate's gRPC port. */
export function checkProviderTarget(operator: K8sObject, k8s: K8sObject[], config: PassgateConfig | undefined): Problems {
  const problems: Problems = [];
  for (const p of meshProviders(operator)) {
    const g = p.envoyExtAuthzGrpc;
    if (!g?.service) continue;
    const ref = serviceRef(g.service);
    if (!ref) {
      problems.push(`provider ${p.name}: service "${g.service}" is neither "<ns>/<name>" nor "<name>.<ns>.svc.cluster.local"`);
      continue;
    }
    const svc = ofKind(k8s, 'Service').find((s) => s.metadata.name === ref[1] && s.metadata.namespace === ref[0]);
    if (!svc) {
      problems.push(`provider ${p.name}: service ${ref[0]}/${ref[1]} is not among the rendered Services`);
      continue;
    }
    const port = (svc.spec?.ports ?? []).find((x: any) => x.port === g.port);
    if (!port) {
      problems.push(`provider ${p.name}: port ${g.port} is not a port of ${id(svc)} (${(svc.spec?.ports ?? []).map((x: any) => x.port).join(', ')})`);
      continue;
    }
    if (!String(port.name ?? '').startsWith('grpc')) problems.push(`provider ${p.name}: ${id(svc)} port ${g.port} is named "${port.name}"; name it grpc-* so Istio speaks HTTP/2`);
    const target = targetPortNumber(svc, port, k8s);
    if (config && target !== config.server.grpc.port) {
      problems.push(`provider ${p.name}: ${id(svc)} port ${g.port} targets ${describeTarget(port, target)} but Passgate listens on server.grpc.port ${config.server.grpc.port}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------
// Gateways

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string>) =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/**
 * Gateway selectors, and the workload selectors of AuthorizationPolicies and WasmPlugins
 * in the gateway namespace, each select at least one gateway deployment; every gateway
 * has exactly one CUSTOM policy.
 */
export function checkGatewaySelectors(istio: K8sObject[], operator: K8sObject): Problems {
  const problems: Problems = [];
  const comps = gatewayComponents(operator);
  for (const gw of ofKind(istio, 'Gateway')) {
    if (!comps.some((c) => matches(gw.spec?.selector, c.labels))) {
      problems.push(`${id(gw)}: selector ${JSON.stringify(gw.spec?.selector)} matches no gateway deployment in istio-operator.yaml`);
    }
  }
  for (const o of [...ofKind(istio, 'AuthorizationPolicy'), ...ofKind(istio, 'WasmPlugin')]) {
    const sel = o.spec?.selector?.matchLabels;
    if (sel === undefined) continue; // namespace-wide or targetRefs: nothing to match
    // Workload selectors only apply in the policy's own namespace.
    if (!comps.some((c) => c.namespace === o.metadata.namespace && matches(sel, c.labels))) {
      problems.push(`${id(o)}: selector ${JSON.stringify(sel)} matches no gateway deployment in namespace ${o.metadata.namespace}`);
    }
  }
  for (const c of comps) {
    const custom = ofKind(istio, 'AuthorizationPolicy').filter(
      (ap) => ap.spec?.action === 'CUSTOM' && ap.metadata.namespace === c.namespace && matches(ap.spec?.selector?.matchLabels, c.labels),
    );
    if (custom.length !== 1) problems.push(`gateway ${c.name}: ${custom.length} CUSTOM AuthorizationPolicies select it; want exactly 1`);
  }
  return problems;
}

/**
 * The ext_proc EnvoyFilter (E2EE bodies): selects a gateway deployment, runs before
 * ext_authz (so Check sees plaintext and the processor's facts), fails closed, lets the
 * processor ask for the body, bounds each message, and calls the Passgate gRPC port.
 */
export function checkExtProcFilters(istio: K8sObject[], operator: K8sObject): Problems {
  const problems: Problems = [];
  const comps = gatewayComponents(operator);
  const ports = new Set(meshProviders(operator).map((p) => p.envoyExtAuthzGrpc?.port));
  for (const f of ofKind(istio, 'EnvoyFilter')) {
    for (const [i, patch] of (f.spec?.configPatches ?? []).entries()) {
      const value = patch?.patch?.value;
      if (value?.name !== 'envoy.filters.http.ext_proc') continue;
      const where = `${id(f)} configPatches[${i}]`;
      const labels = f.spec?.workloadSelector?.labels;
      if (!comps.some((c) => c.namespace === f.metadata.namespace && matches(labels, c.labels))) problems.push(`${where}: workloadSelector ${JSON.stringify(labels)} matches no gateway deployment`);
      if (patch.patch.operation !== 'INSERT_BEFORE' || patch.match?.listener?.filterChain?.filter?.subFilter?.name !== 'envoy.filters.http.ext_authz') {
        problems.push(`${where}: must be INSERT_BEFORE envoy.filters.http.ext_authz (istio#51173), or Check sees ciphertext`);
      }
      const tc = value.typed_config ?? {};
      if (tc.failure_mode_allow !== false) problems.push(`${where}: failure_mode_allow must be false (fail open would forward ciphertext)`);
      if (tc.allow_mode_override !== true) problems.push(`${where}: allow_mode_override must be true (the processor asks for the body only when encrypted)`);
      if (typeof tc.message_timeout !== 'string') problems.push(`${where}: message_timeout must be set`);
      if (tc.processing_mode?.request_body_mode !== 'NONE') problems.push(`${where}: processing_mode.request_body_mode must be NONE (bodies only on request, by mode_override)`);
      const cluster = String(tc.grpc_service?.envoy_grpc?.cluster_name ?? '');
      const m = /^outbound\|(\d+)\|\|passgate\.passgate\.svc\.cluster\.local$/.exec(cluster);
      if (m === null || !ports.has(Number(m[1]))) problems.push(`${where}: cluster ${cluster} is not the Passgate gRPC port of the mesh provider (${[...ports].join(', ')})`);
    }
  }
  return problems;
}

/** CUSTOM policies on ingress gateways keep health paths away from ext_authz. */
export function checkHealthExcluded(istio: K8sObject[], operator: K8sObject): Problems {
  const problems: Problems = [];
  const ingress = gatewayComponents(operator).filter((c) => !c.egress);
  for (const ap of ofKind(istio, 'AuthorizationPolicy')) {
    if (ap.spec?.action !== 'CUSTOM') continue;
    if (!ingress.some((c) => matches(ap.spec?.selector?.matchLabels, c.labels))) continue;
    const rules: any[] = ap.spec?.rules ?? [];
    const ok = rules.length > 0 && rules.every((r) => (r.to ?? []).some((t: any) => (t.operation?.notPaths ?? []).includes('/healthz')));
    if (!ok) problems.push(`${id(ap)}: every rule must exclude health paths (to.operation.notPaths with /healthz)`);
  }
  return problems;
}

/**
 * MUTUAL servers run on gateways pinned to XFCC SANITIZE_SET, and Passgate believes
 * XFCC (trustXfcc: true) exactly for hosts served by MUTUAL servers.
 */
export function checkMutualTls(istio: K8sObject[], operator: K8sObject, config: PassgateConfig | undefined): Problems {
  const problems: Problems = [];
  const comps = gatewayComponents(operator);
  const mutualHosts = new Set<string>();
  for (const gw of ofKind(istio, 'Gateway')) {
    for (const s of gw.spec?.servers ?? []) {
      if (s.tls?.mode !== 'MUTUAL') continue;
      for (const h of s.hosts ?? []) mutualHosts.add(String(h).replace(/^.*\//, ''));
      if (!s.tls.credentialName) problems.push(`${id(gw)}: MUTUAL server ${s.port?.name} has no credentialName (Secret with tls.crt, tls.key, ca.crt)`);
      for (const c of comps.filter((c) => matches(gw.spec?.selector, c.labels))) {
        let fcc: string | undefined;
        try {
          fcc = JSON.parse(c.annotations['proxy.istio.io/config'] ?? '{}')?.gatewayTopology?.forwardClientCertDetails;
        } catch {
          problems.push(`gateway ${c.name}: proxy.istio.io/config is not valid JSON`);
        }
        if (fcc !== 'SANITIZE_SET') problems.push(`gateway ${c.name}: serves MUTUAL TLS but its pod annotation proxy.istio.io/config does not set gatewayTopology.forwardClientCertDetails SANITIZE_SET`);
      }
    }
  }
  if (mutualHosts.size === 0) problems.push('no Gateway server uses tls.mode MUTUAL (the secure gateway needs it)');
  if (config) {
    for (const [name, g] of Object.entries(config.gateways)) {
      const mtlsHosts = g.select.hosts.filter((h) => mutualHosts.has(h));
      if (g.trustXfcc === true && mtlsHosts.length !== g.select.hosts.length) {
        problems.push(`passgate gateway ${name}: trustXfcc: true but hosts ${g.select.hosts.filter((h) => !mutualHosts.has(h)).join(', ')} are not served by a MUTUAL server`);
      }
      if (g.trustXfcc !== true && mtlsHosts.length > 0) problems.push(`passgate gateway ${name}: hosts ${mtlsHosts.join(', ')} are MUTUAL but the gateway lacks trustXfcc: true`);
    }
  }
  return problems;
}

/** Each Istio Gateway host is selected, in Passgate's config, by the gateway of the same kind. */
export function checkHostsInConfig(istio: K8sObject[], operator: K8sObject, config: PassgateConfig | undefined): Problems {
  if (!config) return ['passgate config did not validate; host check skipped'];
  const problems: Problems = [];
  const comps = gatewayComponents(operator);
  for (const gw of ofKind(istio, 'Gateway')) {
    const comp = comps.find((c) => matches(gw.spec?.selector, c.labels));
    const kind = comp?.labels['passgate.io/gateway'];
    if (!kind) {
      problems.push(`${id(gw)}: its gateway deployment has no passgate.io/gateway label naming the client kind`);
      continue;
    }
    const entries = Object.entries(config.gateways).filter(([, g]) => g.kind === kind);
    if (entries.length === 0) {
      problems.push(`${id(gw)}: passgate config has no gateway of kind "${kind}"`);
      continue;
    }
    for (const s of gw.spec?.servers ?? []) {
      for (const raw of s.hosts ?? []) {
        const host = String(raw).replace(/^.*\//, '');
        if (!entries.some(([, g]) => g.select.hosts.includes(host))) {
          problems.push(`${id(gw)}: host ${host} is not in select.hosts of the passgate "${kind}" gateway; its Checks would match no gateway`);
        }
      }
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------
// WASM

/** WasmPlugin sha256 = the built module's SHA-256; url pinned to the packaged image digest. */
export function checkWasmDigests(istio: K8sObject[], wasm: Record<string, BuiltModule>, version: string): Problems {
  const problems: Problems = [];
  const plugins = ofKind(istio, 'WasmPlugin');
  if (plugins.length === 0) problems.push('no WasmPlugin rendered from istio/');
  for (const wp of plugins) {
    const mod = wp.metadata.labels?.['passgate.io/module'];
    const built = mod ? wasm[mod] : undefined;
    if (!built) {
      problems.push(`${id(wp)}: label passgate.io/module "${mod}" names no module in wasm-filters/build/manifest.json`);
      continue;
    }
    // Hashed from the module bytes themselves (the image's module layer), not taken from manifest.json.
    const image = buildImage(mod!, built.content, version);
    const moduleSha = image.moduleDigest.slice('sha256:'.length);
    if (wp.spec?.sha256 !== moduleSha) {
      problems.push(`${id(wp)}: sha256 ${wp.spec?.sha256} is not the built ${built.file} (${moduleSha}); run \`npm run wasm:pin\``);
    }
    const url = String(wp.spec?.url ?? '');
    if (!url.endsWith(`/${mod}@${image.manifestDigest}`)) {
      problems.push(`${id(wp)}: url ${url} is not pinned to the packaged image ${mod}@${image.manifestDigest}; run \`npm run wasm:pin\``);
    }
  }
  return problems;
}

/** pluginConfig uses only keys the filter accepts; sanitize runs first and covers Passgate's internal headers. */
export function checkWasmConfig(istio: K8sObject[], keys: Record<string, string[]>, config: PassgateConfig | undefined): Problems {
  const problems: Problems = [];
  for (const wp of ofKind(istio, 'WasmPlugin')) {
    const mod = wp.metadata.labels?.['passgate.io/module'] ?? '';
    const allowed = keys[mod];
    const pc = wp.spec?.pluginConfig ?? {};
    if (!allowed) problems.push(`${id(wp)}: the pluginConfig keys of filter "${mod}" are unknown, so its pluginConfig cannot be checked`);
    else {
      for (const k of Object.keys(pc)) if (!allowed.includes(k)) problems.push(`${id(wp)}: pluginConfig key "${k}" is unknown to the ${mod} filter (accepts ${allowed.join(', ')}); the filter would refuse to load`);
    }
    if (mod === 'sanitize') {
      if (wp.spec?.phase !== 'AUTHN') problems.push(`${id(wp)}: phase must be AUTHN so it runs before ext_authz`);
      if (config) {
        for (const h of config.headers.internal) if (!(pc.removeRequestHeaders ?? []).includes(h)) problems.push(`${id(wp)}: removeRequestHeaders lacks internal header ${h}`);
        for (const p of config.headers.internalPrefixes) if (!(pc.removeRequestHeaderPrefixes ?? []).includes(p)) problems.push(`${id(wp)}: removeRequestHeaderPrefixes lacks internal prefix ${p}`);
      }
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------
// Workloads

const containersOf = (o: K8sObject): any[] => o.spec?.template?.spec?.containers ?? [];
const podSpecOf = (o: K8sObject): any => o.spec?.template?.spec ?? {};

/** Every probe port is numeric (gRPC probes reject names; Istio's rewrite needs numbers). */
export function checkProbes(k8s: K8sObject[]): Problems {
  const problems: Problems = [];
  for (const d of ofKind(k8s, 'Deployment')) {
    for (const c of containersOf(d)) {
      for (const kind of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
        const p = c[kind];
        if (!p) continue;
        const port = p.grpc?.port ?? p.httpGet?.port ?? p.tcpSocket?.port;
        if (typeof port !== 'number') problems.push(`${id(d)} container ${c.name}: ${kind} port ${JSON.stringify(port)} must be a number`);
      }
    }
  }
  const pg = ofKind(k8s, 'Deployment').find((d) => d.metadata.name === 'passgate');
  const c = pg ? containersOf(pg)[0] : undefined;
  if (!c) problems.push('Deployment passgate is missing');
  else for (const kind of ['livenessProbe', 'readinessProbe']) if (!c[kind]?.grpc) problems.push(`Deployment passgate: ${kind} must be a grpc probe (grpc.health.v1)`);
  return problems;
}

/** Passgate's deployment: non-root, read-only root fs, requests and limits, zone spread. */
export function checkHardening(k8s: K8sObject[]): Problems {
  const problems: Problems = [];
  for (const d of ofKind(k8s, 'Deployment')) {
    const pod = podSpecOf(d);
    for (const c of containersOf(d)) {
      const sc = { ...(pod.securityContext ?? {}), ...(c.securityContext ?? {}) };
      if (sc.runAsNonRoot !== true) problems.push(`${id(d)} container ${c.name}: runAsNonRoot must be true`);
      if (c.securityContext?.readOnlyRootFilesystem !== true) problems.push(`${id(d)} container ${c.name}: readOnlyRootFilesystem must be true`);
      if (c.securityContext?.allowPrivilegeEscalation !== false) problems.push(`${id(d)} container ${c.name}: allowPrivilegeEscalation must be false`);
      for (const part of ['requests', 'limits']) {
        for (const r of ['cpu', 'memory']) if (c.resources?.[part]?.[r] === undefined) problems.push(`${id(d)} container ${c.name}: resources.${part}.${r} is not set`);
      }
    }
    if (d.metadata.name === 'passgate' && !(pod.topologySpreadConstraints ?? []).some((t: any) => t.topologyKey === 'topology.kubernetes.io/zone')) {
      problems.push(`${id(d)}: no topologySpreadConstraint on topology.kubernetes.io/zone`);
    }
  }
  return problems;
}

/** Seconds of the preStop hook: the `sleep` action or an exec of sleep N. */
function preStopSeconds(c: any): number | undefined {
  const ps = c.lifecycle?.preStop;
  if (!ps) return 0;
  if (ps.sleep?.seconds !== undefined) return Number(ps.sleep.seconds);
  const cmd: string[] = ps.exec?.command ?? [];
  if (cmd.length === 2 && /(^|\/)sleep$/.test(cmd[0]!) && /^\d+(\.\d+)?$/.test(cmd[1]!)) return Number(cmd[1]);
  return undefined;
}

/** preStop + server.shutdownGraceMs ends before terminationGracePeriodSeconds kills the pod. */
export function checkDrain(k8s: K8sObject[], config: PassgateConfig | undefined): Problems {
  if (!config) return ['passgate config did not validate; drain check skipped'];
  const d = ofKind(k8s, 'Deployment').find((x) => x.metadata.name === 'passgate');
  if (!d) return ['Deployment passgate is missing'];
  const c = containersOf(d)[0];
  const pre = preStopSeconds(c);
  if (pre === undefined) return [`${id(d)}: preStop is neither a sleep action nor ["sleep", "N"]; cannot prove the drain fits`];
  const grace = podSpecOf(d).terminationGracePeriodSeconds ?? 30;
  const need = pre * 1000 + config.server.shutdownGraceMs;
  return need < grace * 1000 ? [] : [`${id(d)}: preStop ${pre}s + shutdownGraceMs ${config.server.shutdownGraceMs}ms = ${need}ms is not below terminationGracePeriodSeconds ${grace}s`];
}

/** The ConfigMap the Deployment mounts holds a config.yaml that our own schema accepts. */
export function checkConfigMap(k8s: K8sObject[]): { problems: Problems; config?: PassgateConfig } {
  const d = ofKind(k8s, 'Deployment').find((x) => x.metadata.name === 'passgate');
  if (!d) return { problems: ['Deployment passgate is missing'] };
  const c = containersOf(d)[0] ?? {};
  const args: string[] = c.args ?? [];
  const configPath = args[args.indexOf('--config') + 1];
  if (args.indexOf('--config') < 0 || !configPath) return { problems: [`${id(d)}: args must pass --config PATH`] };
  const mount = (c.volumeMounts ?? []).find((m: any) => configPath.startsWith(`${m.mountPath}/`));
  if (!mount) return { problems: [`${id(d)}: --config ${configPath} is under no volumeMount`] };
  if (mount.subPath) return { problems: [`${id(d)}: config mount uses subPath; ConfigMap updates would never reach the pod`] };
  const vol = (podSpecOf(d).volumes ?? []).find((v: any) => v.name === mount.name);
  const cmName = vol?.configMap?.name;
  const cm = ofKind(k8s, 'ConfigMap').find((x) => x.metadata.name === cmName);
  if (!cm) return { problems: [`${id(d)}: volume ${mount.name} names ConfigMap ${cmName}, which is not rendered`] };
  const key = configPath.slice(mount.mountPath.length + 1);
  const text = cm.data?.[key];
  if (typeof text !== 'string') return { problems: [`${id(cm)}: has no key ${key} (the Deployment reads ${configPath})`] };
  try {
    return { problems: [], config: parseConfigText(text, `${id(cm)} ${key}`) };
  } catch (err) {
    return { problems: [String((err as Error).message)] };
  }
}

/**
 * The container port number a Service port reaches: targetPort itself when numeric
 * (port when absent), else the containerPort of that name in a Deployment the Service
 * selects; undefined when no selected container declares the name.
 */
function targetPortNumber(svc: K8sObject, port: any, k8s: K8sObject[]): number | undefined {
  const t = port.targetPort ?? port.port;
  if (typeof t === 'number') return t;
  for (const d of ofKind(k8s, 'Deployment')) {
    if (!selects({ matchLabels: svc.spec?.selector }, d.spec?.template?.metadata?.labels ?? {})) continue;
    for (const c of containersOf(d)) {
      const named = (c.ports ?? []).find((p: any) => p.name === t);
      if (named) return named.containerPort;
    }
  }
  return undefined;
}

const describeTarget = (port: any, n: number | undefined) =>
  typeof port.targetPort === 'string' ? `"${port.targetPort}" (${n === undefined ? 'no selected container declares it' : `containerPort ${n}`})` : String(n);

/** Service ports are named for Istio protocol selection; Passgate's reach its configured ports. */
export function checkServicePorts(k8s: K8sObject[], config: PassgateConfig | undefined): Problems {
  const problems: Problems = [];
  for (const svc of ofKind(k8s, 'Service')) {
    if (svc.spec?.type === 'ExternalName') continue;
    for (const p of svc.spec?.ports ?? []) {
      if (!/^(grpc|http|http2|https|tcp|tls|redis)(-|$)/.test(String(p.name ?? ''))) problems.push(`${id(svc)}: port ${p.port} name "${p.name}" does not start with a protocol (grpc-, http-, tcp-)`);
    }
  }
  const svc = ofKind(k8s, 'Service').find((s) => s.metadata.name === 'passgate');
  if (!svc) return [...problems, 'Service passgate is missing'];
  const names = (svc.spec?.ports ?? []).map((p: any) => String(p.name));
  if (!names.some((n: string) => n.startsWith('grpc-'))) problems.push(`${id(svc)}: needs a grpc-* port for ext_authz`);
  if (!names.some((n: string) => n.startsWith('http-'))) problems.push(`${id(svc)}: needs an http-* port for admin`);
  if (config) {
    const targets = (svc.spec?.ports ?? []).map((p: any) => targetPortNumber(svc, p, k8s));
    for (const want of [config.server.grpc.port, config.server.admin.port]) if (!targets.includes(want)) problems.push(`${id(svc)}: no port targets ${want} (config server ports)`);
  }
  return problems;
}

/** Match a Kubernetes LabelSelector (matchLabels + matchExpressions) against labels. */
export function selects(selector: any, labels: Record<string, string>): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    const val = labels[e.key];
    if (e.operator === 'In' && !(has && e.values.includes(val))) return false;
    if (e.operator === 'NotIn' && has && e.values.includes(val)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/**
 * The NetworkPolicy in front of Passgate selects its pods and admits every gateway
 * deployment (namespace + labels) on the gRPC port, and nothing else on that port.
 */
export function checkNetworkPolicy(k8s: K8sObject[], operator: K8sObject, config: PassgateConfig | undefined): Problems {
  const problems: Problems = [];
  const d = ofKind(k8s, 'Deployment').find((x) => x.metadata.name === 'passgate');
  const podLabels = d?.spec?.template?.metadata?.labels ?? {};
  const grpcPort = config?.server.grpc.port ?? 9001;
  const nps = ofKind(k8s, 'NetworkPolicy').filter((np) => selects(np.spec?.podSelector, podLabels));
  if (nps.length === 0) return ['no NetworkPolicy selects the passgate pods'];
  const rulesForPort = nps.flatMap((np) => (np.spec?.ingress ?? []).filter((r: any) => !r.ports || r.ports.some((p: any) => p.port === grpcPort)));
  for (const r of rulesForPort) {
    if (!r.from || r.from.length === 0) problems.push(`NetworkPolicy: an ingress rule opens port ${grpcPort} to everyone`);
    for (const peer of r.from ?? []) if (!peer.podSelector) problems.push(`NetworkPolicy: a peer admits whole namespaces on port ${grpcPort}; restrict it to the gateway pods`);
  }
  for (const c of gatewayComponents(operator)) {
    const nsLabels = { 'kubernetes.io/metadata.name': c.namespace };
    const admitted = rulesForPort.some((r: any) =>
      (r.from ?? []).some((peer: any) => (peer.namespaceSelector ? selects(peer.namespaceSelector, nsLabels) : d?.metadata.namespace === c.namespace) && selects(peer.podSelector, c.labels)),
    );
    if (!admitted) problems.push(`NetworkPolicy: gateway ${c.name} (${c.namespace}, ${JSON.stringify(c.labels)}) cannot reach port ${grpcPort}`);
  }
  return problems;
}

/** HPA, PDB and Service point at the Deployment that exists and its pods. */
export function checkReferences(k8s: K8sObject[]): Problems {
  const problems: Problems = [];
  const deps = ofKind(k8s, 'Deployment');
  for (const h of ofKind(k8s, 'HorizontalPodAutoscaler')) {
    const t = h.spec?.scaleTargetRef;
    if (!deps.some((d) => d.metadata.name === t?.name && t?.kind === 'Deployment')) problems.push(`${id(h)}: scaleTargetRef ${t?.kind}/${t?.name} is not a rendered Deployment`);
  }
  for (const o of [...ofKind(k8s, 'PodDisruptionBudget'), ...ofKind(k8s, 'Service')]) {
    if (o.spec?.type === 'ExternalName') continue;
    const sel = o.kind === 'Service' ? { matchLabels: o.spec?.selector } : o.spec?.selector;
    if (!deps.some((d) => selects(sel, d.spec?.template?.metadata?.labels ?? {}))) problems.push(`${id(o)}: selector selects no rendered Deployment's pods`);
  }
  for (const d of deps) {
    if (!selects(d.spec?.selector, d.spec?.template?.metadata?.labels ?? {})) problems.push(`${id(d)}: spec.selector does not match its own pod labels`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------
// Timeouts and traffic policy

/** Every route has a timeout, every DestinationRule a connect timeout and outlier detection. */
export function checkTimeouts(istio: K8sObject[]): Problems {
  const problems: Problems = [];
  for (const vs of ofKind(istio, 'VirtualService')) {
    (vs.spec?.http ?? []).forEach((r: any, i: number) => {
      if (!r.timeout) problems.push(`${id(vs)}: http[${i}] (${r.name ?? 'unnamed'}) has no timeout`);
    });
  }
  for (const dr of ofKind(istio, 'DestinationRule')) {
    const tp = dr.spec?.trafficPolicy;
    if (!tp) {
      // Subset-only rules (the egress gateway leg) carry only TLS settings; a rule with neither limits nothing.
      if ((dr.spec?.subsets ?? []).length === 0) problems.push(`${id(dr)}: no trafficPolicy (connect timeout, outlier detection)`);
      continue;
    }
    if (!tp.connectionPool?.tcp?.connectTimeout) problems.push(`${id(dr)}: trafficPolicy.connectionPool.tcp.connectTimeout is not set`);
    if (!tp.outlierDetection) problems.push(`${id(dr)}: no outlierDetection`);
  }
  return problems;
}

/** Egress: REGISTRY_ONLY sidecar, TLS origination, and the Passgate DestinationRule. */
export function checkEgressAndTraffic(istio: K8sObject[]): Problems {
  const problems: Problems = [];
  if (!ofKind(istio, 'Sidecar').some((s) => s.spec?.outboundTrafficPolicy?.mode === 'REGISTRY_ONLY')) problems.push('no Sidecar with outboundTrafficPolicy REGISTRY_ONLY');
  for (const se of ofKind(istio, 'ServiceEntry')) {
    for (const host of se.spec?.hosts ?? []) {
      const dr = ofKind(istio, 'DestinationRule').find((d) => d.spec?.host === host);
      const originates = (dr?.spec?.trafficPolicy?.portLevelSettings ?? []).some((p: any) => p.tls?.mode === 'SIMPLE' || p.tls?.mode === 'MUTUAL');
      if (!originates) problems.push(`${id(se)}: no DestinationRule originates TLS to ${host}`);
    }
  }
  const pa = ofKind(istio, 'PeerAuthentication').find((p) => p.metadata.namespace === 'istio-system' && !p.spec?.selector);
  if (pa?.spec?.mtls?.mode !== 'STRICT') problems.push('no mesh-wide PeerAuthentication STRICT in istio-system');
  const pg = ofKind(istio, 'DestinationRule').find((d) => /^passgate\.passgate(\.svc(\.cluster\.local)?)?$/.test(String(d.spec?.host)));
  if (!pg) problems.push('no DestinationRule for passgate.passgate.svc.cluster.local');
  else if (!pg.spec?.trafficPolicy?.connectionPool?.http?.http2MaxRequests) problems.push(`${id(pg)}: set connectionPool.http.http2MaxRequests (gRPC multiplexes on few connections)`);
  return problems;
}

// ---------------------------------------------------------------------------------

export interface CheckReport {
  name: string;
  problems: Problems;
}

/** Runs every check over a bundle; `version` is the package version the images are tagged with. */
export function runAll(b: Bundle, version: string): CheckReport[] {
  const out: CheckReport[] = [];
  let config: PassgateConfig | undefined;
  for (const [overlay, objs] of Object.entries(b.overlays)) {
    const cm = checkConfigMap(objs);
    config ??= cm.config;
    out.push({ name: `${overlay}: schemas`, problems: checkSchemas(objs) });
    out.push({ name: `${overlay}: config`, problems: cm.problems });
    out.push({ name: `${overlay}: probes`, problems: checkProbes(objs) });
    out.push({ name: `${overlay}: hardening`, problems: checkHardening(objs) });
    out.push({ name: `${overlay}: drain`, problems: checkDrain(objs, cm.config) });
    out.push({ name: `${overlay}: service ports`, problems: checkServicePorts(objs, cm.config) });
    out.push({ name: `${overlay}: network policy`, problems: checkNetworkPolicy(objs, b.operator, cm.config) });
    out.push({ name: `${overlay}: references`, problems: checkReferences(objs) });
    out.push({ name: `${overlay}: provider target`, problems: checkProviderTarget(b.operator, objs, cm.config) });
  }
  out.push({ name: 'istio: schemas', problems: checkSchemas([...b.istio, b.operator]) });
  out.push({ name: 'mesh: provider settings', problems: checkProviderSettings(b.operator) });
  out.push({ name: 'mesh: helm and istioctl agree', problems: checkMeshVariantsAgree(b.operator, b.istiodValues) });
  out.push({ name: 'istio: CUSTOM providers', problems: checkCustomProviders(b.istio, b.operator) });
  out.push({ name: 'istio: gateway selectors', problems: checkGatewaySelectors(b.istio, b.operator) });
  out.push({ name: 'istio: health excluded', problems: checkHealthExcluded(b.istio, b.operator) });
  out.push({ name: 'istio: mutual TLS', problems: checkMutualTls(b.istio, b.operator, config) });
  out.push({ name: 'istio: hosts in config', problems: checkHostsInConfig(b.istio, b.operator, config) });
  out.push({ name: 'istio: wasm digests', problems: checkWasmDigests(b.istio, b.wasm, version) });
  out.push({ name: 'istio: wasm config', problems: checkWasmConfig(b.istio, b.wasmKeys, config) });
  out.push({ name: 'istio: timeouts', problems: checkTimeouts(b.istio) });
  out.push({ name: 'istio: ext_proc (e2ee)', problems: checkExtProcFilters(b.istio, b.operator) });
  out.push({ name: 'istio: egress and traffic', problems: checkEgressAndTraffic(b.istio) });
  out.push({ name: 'istio: affiliate routing', problems: checkAffiliateRouting(b.istio, b.operator) });
  out.push({ name: 'istio: affiliate principals', problems: checkAffiliatePrincipals(b.istio, b.operator) });
  out.push({ name: 'istio: affiliate profiles', problems: checkAffiliateProfiles(b.istio, b.operator, config) });
  return out;
}
