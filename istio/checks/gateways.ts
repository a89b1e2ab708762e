/**
 * The gateway deployments an IstioOperator declares, read once by every check
 * that needs them (its own module so the checks files import it, not each other).
 */
import type { K8sObject } from './load.js';

export interface GatewayComponent {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  egress: boolean;
}

/** Gateway deployments declared in the IstioOperator (the pods that carry these labels). */
export function gatewayComponents(operator: K8sObject): GatewayComponent[] {
  const c = operator.spec?.components ?? {};
  const list = (arr: any[] | undefined, egress: boolean) =>
    (arr ?? [])
      .filter((g) => g.enabled !== false)
      .map((g) => ({
        name: g.name,
        namespace: g.namespace ?? 'istio-system',
        labels: { ...(g.label ?? {}) },
        annotations: { ...(g.k8s?.podAnnotations ?? {}) },
        egress,
      }));
  return [...list(c.ingressGateways, false), ...list(c.egressGateways, true)];
}
