/**
 * The app gateway part of `npm start` (the public gateway's `/app` route of
 * the embedded default): Envoy's with_request_body for the local gateway, so
 * signed bodies reach the app-signature stage, and the banner lines that
 * register a demo device, sign and curl, then replay the same request.
 * Kept apart from dev.ts, which only calls these two.
 */
import type { WithRequestBody } from './gateway.js';

/** As Istio's includeRequestBodyInCheck would set it: 8 KiB, cut bodies marked (the stage refuses them), raw bytes. */
export const APP_DEMO_BODY: WithRequestBody = { maxRequestBytes: 8192, allowPartialMessage: true, packAsBytes: true };

/** Banner lines; none when the service has no registration listener (a config without appSignature). */
export async function appDemoLines(adminPort: number, httpPort: number): Promise<string[]> {
  const info = await fetch(`http://127.0.0.1:${adminPort}/admin/app-signature`).then(
    (r) => (r.ok ? (r.json() as Promise<{ registration: { port: number } | null }>) : undefined),
    () => undefined,
  );
  if (!info?.registration) return [];
  const url = `http://localhost:${httpPort}/app/hello`;
  return [
    '    # app flow: register a demo device, sign one request (RFC 9421) and send it twice: 200, then 401 signature_replayed',
    `    npm run -s app-request -- ${url} --register http://127.0.0.1:${info.registration.port} > /tmp/passgate-app.h && for i in 1 2; do curl -si -H @/tmp/passgate-app.h ${url}; echo; done`,
    '    # the same with a body (Content-Digest covered and checked against the forwarded body)',
    `    npm run -s app-request -- ${url} --register http://127.0.0.1:${info.registration.port} --method POST --data '{"amount":10}' > /tmp/passgate-app.h && curl -si -H @/tmp/passgate-app.h --data '{"amount":10}' ${url}`,
  ];
}
