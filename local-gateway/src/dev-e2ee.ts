/**
 * The e2ee part of `npm start`'s banner: the app gateway listener (ext_proc
 * before ext_authz) and the command that sends one encrypted request
 * through it. Kept apart from dev.ts, which calls it with one line.
 */
import type { Stack } from './stack.js';

export function e2eeBanner(stack: Stack, host: string, say: (line: string) => void): void {
  if (stack.appPort === 0) return;
  say(`    # app gateway (gateway=app) http://${host}:${stack.appPort}: end-to-end encrypted bodies, decrypted by the e2ee processor (ext_proc) before Check;`);
  say('    # seals a JSON body with the dev app key, sends it, prints the reply decrypted (the echo shows the plaintext and the Passport)');
  say(`    PASSGATE_ADMIN_URL=http://127.0.0.1:${stack.service.adminPort} npm run -s e2ee-request -- http://${host}:${stack.appPort}/api/orders '{"item":"book","qty":2}'`);
}
