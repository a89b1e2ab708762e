/** Long-lived parts of the identity capability (admin endpoints, connections); listed in server/capabilities.ts. */
import type { Capability, CapabilityHost } from '../server/capability.js';
import type { PassgateConfig } from '../config/schema.js';
import { sendJson } from '../server/admin-server.js';
import { compileMtls } from './profile.js';
import { CERTIFICATE_CACHE_KEY } from './mtls-stage.js';
import type { CertificateCache } from './certificate.js';

/**
 * Compiles `identity.mtls` before stages are built, so a bad rule or an
 * unreadable CA file stops startup (or rejects a reload) with the key named,
 * and serves `GET /identity/mtls` (certificate cache statistics).
 */
function mtlsCapability(): Capability {
  let current: PassgateConfig | undefined;
  const compile = (config: PassgateConfig) => {
    if (config.identity?.mtls) compileMtls(config.identity.mtls);
    current = config;
  };
  return {
    name: 'identity-mtls',
    start(host: CapabilityHost) {
      compile(host.config);
      host.admin.route('GET', '/identity/mtls', (_req, res) => {
        const mtls = current?.identity?.mtls;
        if (!mtls) return sendJson(res, 200, { configured: false });
        const profile = compileMtls(mtls);
        const cache = host.services.peek<CertificateCache>(CERTIFICATE_CACHE_KEY);
        sendJson(res, 200, {
          configured: true,
          rules: profile.rules.map((r) => r.name),
          trustedProxies: [...profile.trustedProxies],
          caRoots: profile.anchors?.roots.length ?? 0,
          cache: cache ? { size: cache.size, max: cache.max, bytes: cache.bytes, maxBytes: cache.maxBytes, hits: cache.hits, misses: cache.misses } : undefined,
        });
      });
    },
    reload(config: PassgateConfig) {
      compile(config);
    },
  };
}

export function identityCapabilities(): Capability[] {
  return [mtlsCapability()];
}
