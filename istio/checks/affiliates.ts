/**
 * Offline checks of the per-affiliate egress layout (istio/egress/affiliates/<name>/):
 * an affiliate is every object labelled passgate.io/affiliate, and its gateway is the
 * IstioOperator egress gateway carrying the same label. Pure functions over plain
 * objects returning problems, like checks.ts.
 */
import type { PassgateConfig } from '../../ext-authz/src/config/schema.js';
import { gatewayComponents } from './gateways.js';
import type { K8sObject } from './load.js';

type Problems = string[];
const LABEL = 'passgate.io/affiliate';
const SHARED = 'passgate.io/shared-principals';
const id = (o: K8sObject) => `${o.kind} ${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name}`;
const ofKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind);
const affiliateOf = (o: K8sObject) => o.metadata?.labels?.[LABEL];
const sameLabels = (sel: Record<string, string> | undefined, labels: Record<string, string>) =>
  sel !== undefined && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels[k] === v);

/** Affiliate names: from the labelled ServiceEntries and the labelled gateway deployments. */
export function affiliateNames(istio: K8sObject[], operator: K8sObject): string[] {
  const names = new Set<string>();
  for (const se of ofKind(istio, 'ServiceEntry')) if (affiliateOf(se)) names.add(affiliateOf(se)!);
  for (const c of gatewayComponents(operator)) if (c.egress && c.labels[LABEL]) names.add(c.labels[LABEL]);
  return [...names].sort();
}

/** The Gateway names ("ns/name") whose selector picks the affiliate's own gateway deployment. */
function ownGateways(istio: K8sObject[], operator: K8sObject, affiliate: string): { gateways: Set<string>; services: Set<string>; problems: Problems } {
  const comps = gatewayComponents(operator).filter((c) => c.egress && c.labels[LABEL] === affiliate);
  if (comps.length !== 1) return { gateways: new Set(), services: new Set(), problems: [`affiliate ${affiliate}: ${comps.length} egress gateways in istio-operator.yaml carry ${LABEL}: ${affiliate}; want exactly 1`] };
  const comp = comps[0]!;
  const gateways = new Set(
    ofKind(istio, 'Gateway')
      .filter((g) => (g.metadata.namespace ?? 'default') === comp.namespace && sameLabels(g.spec?.selector, comp.labels))
      .map((g) => `${g.metadata.namespace}/${g.metadata.name}`),
  );
  const services = new Set([`${comp.name}.${comp.namespace}.svc.cluster.local`, `${comp.name}.${comp.namespace}.svc`, `${comp.name}.${comp.namespace}`]);
  return { gateways, services, problems: gateways.size === 0 ? [`affiliate ${affiliate}: no Gateway selects its egress gateway ${comp.name}`] : [] };
}

const qualify = (gw: string, ns: string) => (gw === 'mesh' || gw.includes('/') ? gw : `${ns}/${gw}`);

/**
 * Every affiliate's ServiceEntry host is reachable only through its own gateway: each
 * VirtualService for the host names only `mesh` and that affiliate's Gateways, its mesh
 * routes go to the affiliate's gateway Service, and no other affiliate's Gateway serves the host.
 */
export function checkAffiliateRouting(istio: K8sObject[], operator: K8sObject): Problems {
  const problems: Problems = [];
  for (const a of affiliateNames(istio, operator)) {
    const own = ownGateways(istio, operator, a);
    problems.push(...own.problems);
    const hosts = ofKind(istio, 'ServiceEntry').filter((se) => affiliateOf(se) === a).flatMap((se) => (se.spec?.hosts ?? []) as string[]);
    if (hosts.length === 0) problems.push(`affiliate ${a}: no ServiceEntry labelled ${LABEL}: ${a}`);
    for (const host of hosts) {
      const vss = ofKind(istio, 'VirtualService').filter((vs) => (vs.spec?.hosts ?? []).includes(host));
      if (vss.length === 0) problems.push(`affiliate ${a}: no VirtualService routes ${host}, so sidecars would go straight out instead of through gw-egress-${a}`);
      for (const vs of vss) {
        const ns = vs.metadata.namespace ?? 'default';
        const declared = ((vs.spec?.gateways ?? ['mesh']) as string[]).map((g) => qualify(g, ns));
        for (const g of declared) if (g !== 'mesh' && !own.gateways.has(g)) problems.push(`${id(vs)}: routes ${host} (affiliate ${a}) through Gateway ${g}, which is not ${a}'s own egress gateway`);
        if (!declared.includes('mesh')) problems.push(`${id(vs)}: does not bind gateway "mesh", so sidecars calling ${host} are not sent to ${a}'s egress gateway`);
        (vs.spec?.http ?? []).forEach((r: any, i: number) => {
          const routeGws = (r.match ?? []).flatMap((m: any) => (m.gateways ?? []) as string[]).map((g: string) => qualify(g, ns));
          const fromMesh = routeGws.length === 0 ? declared.includes('mesh') : routeGws.includes('mesh');
          if (!fromMesh) return;
          for (const d of r.route ?? []) {
            const to = String(d.destination?.host ?? '');
            if (!own.services.has(to)) problems.push(`${id(vs)}: http[${i}] (${r.name ?? 'unnamed'}) sends mesh traffic for ${host} to ${to}, not to ${a}'s egress gateway Service`);
          }
        });
      }
      for (const gw of ofKind(istio, 'Gateway')) {
        const key = `${gw.metadata.namespace}/${gw.metadata.name}`;
        if (own.gateways.has(key)) continue;
        const served = (gw.spec?.servers ?? []).some((s: any) => (s.hosts ?? []).some((h: string) => h.replace(/^.*\//, '') === host || h === '*'));
        if (served) problems.push(`${id(gw)}: serves ${host} of affiliate ${a}; only ${a}'s own egress gateway may`);
      }
    }
  }
  return problems;
}

/** ALLOW principals per affiliate, with the principals its policies declare as shared. */
function allowedPrincipals(istio: K8sObject[], operator: K8sObject, a: string): { principals: Map<string, string>; shared: Set<string> } {
  const principals = new Map<string, string>();
  const shared = new Set<string>();
  const comp = gatewayComponents(operator).find((c) => c.egress && c.labels[LABEL] === a);
  for (const ap of ofKind(istio, 'AuthorizationPolicy')) {
    if (ap.spec?.action !== 'ALLOW') continue;
    const onGateway = comp !== undefined && ap.metadata.namespace === comp.namespace && sameLabels(ap.spec?.selector?.matchLabels, comp.labels);
    if (!onGateway && affiliateOf(ap) !== a) continue;
    for (const p of String(ap.metadata.annotations?.[SHARED] ?? '').split(',').map((x) => x.trim()).filter(Boolean)) shared.add(p);
    for (const r of ap.spec?.rules ?? []) for (const f of r.from ?? []) for (const p of f.source?.principals ?? []) principals.set(p, id(ap));
  }
  return { principals, shared };
}

/**
 * No workload principal is allowed by two affiliates unless both affiliates' ALLOW
 * policies list it in passgate.io/shared-principals; no affiliate allows "*".
 */
export function checkAffiliatePrincipals(istio: K8sObject[], operator: K8sObject): Problems {
  const problems: Problems = [];
  const names = affiliateNames(istio, operator);
  const by = new Map(names.map((a) => [a, allowedPrincipals(istio, operator, a)]));
  for (const a of names) {
    const pa = by.get(a)!;
    if (pa.principals.size === 0) problems.push(`affiliate ${a}: no ALLOW AuthorizationPolicy names which SPIFFE principals may call it`);
    for (const [p, where] of pa.principals) if (p.includes('*')) problems.push(`${where}: principal "${p}" is a wildcard; name each workload allowed to call affiliate ${a}`);
  }
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      const a = by.get(names[i]!)!;
      const b = by.get(names[j]!)!;
      for (const [p, where] of a.principals) {
        if (!b.principals.has(p)) continue;
        if (a.shared.has(p) && b.shared.has(p)) continue;
        problems.push(`principal ${p} is allowed by affiliates ${names[i]} (${where}) and ${names[j]} (${b.principals.get(p)}); list it in ${SHARED} of both policies if that is intended`);
      }
    }
  }
  return problems;
}

/**
 * Every affiliate has its Passgate profile egress-<affiliate>: kind egress, fail closed,
 * selecting each of the affiliate's hosts, and authorizing exactly the SPIFFE ids the
 * affiliate's ALLOW policies name (so Istio and Passgate agree on who may call).
 */
export function checkAffiliateProfiles(istio: K8sObject[], operator: K8sObject, config: PassgateConfig | undefined): Problems {
  if (!config) return ['passgate config did not validate; affiliate profile check skipped'];
  const problems: Problems = [];
  for (const a of affiliateNames(istio, operator)) {
    const name = `egress-${a}`;
    const g = config.gateways[name];
    if (!g) {
      problems.push(`affiliate ${a}: Passgate config (k8s/base/config/passgate.yaml) has no gateway "${name}"; add one of kind egress selecting its hosts`);
      continue;
    }
    if (g.kind !== 'egress') problems.push(`gateway ${name}: kind is "${g.kind}", want egress`);
    if (g.failureMode !== 'closed') problems.push(`gateway ${name}: failureMode must be closed`);
    for (const se of ofKind(istio, 'ServiceEntry').filter((x) => affiliateOf(x) === a)) {
      for (const h of se.spec?.hosts ?? []) if (!g.select.hosts.includes(h)) problems.push(`gateway ${name}: select.hosts lacks ${h} (${id(se)}); its Checks would not reach this profile`);
    }
    const subjects = new Set<string>();
    for (const r of [...g.routes, ...(g.defaultRoute ? [g.defaultRoute] : [])] as any[]) {
      for (const s of r.stages ?? []) if (s?.type === 'authorize') for (const sub of s.subjects ?? []) subjects.add(String(sub).replace(/^spiffe:\/\//, ''));
    }
    const allowed = [...allowedPrincipals(istio, operator, a).principals.keys()];
    for (const p of allowed) if (!subjects.has(p)) problems.push(`gateway ${name}: authorize subjects lack spiffe://${p}, which the ALLOW policy of affiliate ${a} admits`);
    for (const s of subjects) if (!allowed.includes(s)) problems.push(`gateway ${name}: authorizes spiffe://${s}, which no ALLOW policy of affiliate ${a} admits`);
  }
  return problems;
}
