/**
 * `npm run e2ee-request -- [url] [json]`: one end-to-end encrypted request
 * against `npm start`'s app gateway, as an app would send it: fetches the
 * key config from the admin port, seals the JSON body with the
 * DEVELOPMENT-ONLY app key below (its public half is registered in
 * default.yaml as e2ee.senders dev-app-1), posts it, and prints the status
 * and the decrypted reply (the echo upstream's view: plaintext and
 * Passport). Never register this key anywhere real.
 *
 * PASSGATE_ADMIN_URL (default http://127.0.0.1:9090) is where the keys are.
 */
import { E2eeClient } from './client.js';

const DEV_APP_KEY = { kty: 'OKP', crv: 'X25519', x: 'IoqrKbJJ95tXf4YXqaSTmUBdE6UfRqrfFrT1Lkg63WI', d: 'kCLVI7jylE43_c4v02vtve1bU1Rf5OlUz0WCPAU7SH4' };
const CONTENT_TYPE = 'application/vnd.passgate.e2ee';
const RESPONSE_TYPE = 'application/vnd.passgate.e2ee-response';

async function main(): Promise<void> {
  const [url = 'http://localhost:8082/api/orders', json = '{"item":"book","qty":2}'] = process.argv.slice(2);
  const admin = process.env['PASSGATE_ADMIN_URL'] || 'http://127.0.0.1:9090';
  const keys = await fetch(`${admin}/e2ee/keys`);
  if (!keys.ok) throw new Error(`GET ${admin}/e2ee/keys answered ${keys.status}: is npm start running with an e2ee section?`);
  const sender = await E2eeClient.senderFromJwk('dev-app-1', DEV_APP_KEY);
  const client = await E2eeClient.fromKeyConfigs(new Uint8Array(await keys.arrayBuffer()), { sender });
  const sealed = await client.seal('application/json', Buffer.from(json, 'utf8'));
  process.stdout.write(`> POST ${url}  (${json.length} bytes of JSON sealed into ${sealed.body.length} bytes of ${CONTENT_TYPE})\n`);
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': CONTENT_TYPE }, body: Buffer.from(sealed.body) as unknown as BodyInit });
  const body = new Uint8Array(await res.arrayBuffer());
  const type = res.headers.get('content-type') ?? '';
  process.stdout.write(`< ${res.status} ${type} (${body.length} bytes)\n`);
  if (type === RESPONSE_TYPE) {
    const opened = await sealed.openResponse(body);
    process.stdout.write(`< decrypted (${opened.contentType}):\n${opened.payload.toString('utf8')}\n`);
  } else process.stdout.write(`${Buffer.from(body).toString('utf8')}\n`);
  if (!res.ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`e2ee-request: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
