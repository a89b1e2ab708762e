/**
 * The identity capability: the mtls and authorize stages, the `identity`
 * section, and `GET /identity/mtls` (rules and certificate cache statistics).
 * Prepare compiles `identity.mtls` (a bad rule or an unreadable CA file
 * rejects the config with the key named); the certificate cache outlives
 * reloads and is resized only when the new config is committed.
 */
import type { Capability, Prepared } from '../capabilities/capability.js';
import { sendJson } from '../capabilities/admin-http.js';
import { identityConfigSchema } from './config.js';
import { compileMtls } from './profile.js';
import type { IdentityState } from './state.js';
import { CertificateCache } from './certificate.js';
import { mtlsStage } from './mtls-stage.js';
import { authorizeStage } from './authorize-stage.js';


const DEFAULT_CACHE_SIZE = 10_000;
const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;

export const identityCapability: Capability<IdentityState> = {
  name: 'identity',
  section: { key: 'identity', schema: identityConfigSchema },
  stages: [mtlsStage, authorizeStage],
  prepare(config, ctx): Prepared<IdentityState> {
    // Throws a ConfigError (problems naming identity.mtls keys): the config is rejected.
    const mtls = config.identity?.mtls ? compileMtls(config.identity.mtls) : undefined;
    const size = mtls?.cacheSize ?? ctx.previous?.certificates.max ?? DEFAULT_CACHE_SIZE;
    const bytes = mtls?.cacheBytes ?? ctx.previous?.certificates.maxBytes ?? DEFAULT_CACHE_BYTES;
    const certificates = ctx.previous?.certificates ?? new CertificateCache(size, bytes);
    const state: IdentityState = { mtls, certificates };
    return {
      state,
      commit: () => certificates.resize(size, bytes),
      adminRoutes: [
        {
          method: 'GET',
          path: '/identity/mtls',
          handler: (_req, res) => {
            if (!mtls) return sendJson(res, 200, { configured: false });
            const c = certificates;
            sendJson(res, 200, {
              configured: true,
              rules: mtls.rules.map((r) => r.name),
              trustedProxies: [...mtls.trustedProxies],
              caRoots: mtls.anchors?.roots.length ?? 0,
              cache: { size: c.size, max: c.max, bytes: c.bytes, maxBytes: c.maxBytes, hits: c.hits, misses: c.misses },
            });
          },
        },
      ],
    };
  },
};
