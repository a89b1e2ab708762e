/**
 * `npm run app-request -- <url> [--register <url>] [--method M] [--data BODY]`:
 * the app side of the embedded default's `/app` route, for `npm start`.
 * Registers a fresh demo device (an `offline` attestation signed with the
 * DEVELOPMENT-ONLY registration authority key below, whose public half is
 * `appSignature.registration.authorities.dev-backend` in default.yaml), signs
 * one request with the reference SDK and prints its headers, one per line,
 * for `curl -H @file`. Never configure this key anywhere real.
 */
import { createPrivateKey } from 'node:crypto';
import { parseArgs } from 'node:util';
import { AppDevice, offlineAttestation } from './client.js';

const DEV_AUTHORITY_KEY = {
  kty: 'EC',
  crv: 'P-256',
  x: 'czEfdbI24Plc8mR--UrarwQFTeUmltTW8ALg_ytPH8k',
  y: 'iURuZtHuT8D0yeCADerNmipLKurq_r2OTSvXcm2DG6w',
  d: 'zBjjWUPy348SDeTdnNAzbiEGHdRViBiIoqNrjQ3_jrU',
};

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    options: { register: { type: 'string' }, method: { type: 'string', default: 'GET' }, data: { type: 'string' }, user: { type: 'string', default: 'alice' } },
    allowPositionals: true,
    strict: true,
  });
  const url = positionals[0] ?? 'http://localhost:8080/app/hello';
  const register = values.register ?? 'http://127.0.0.1:9092';
  const device = AppDevice.generate('ecdsa-p256-sha256');
  const attestation = offlineAttestation(createPrivateKey({ key: DEV_AUTHORITY_KEY, format: 'jwk' }), { authority: 'dev-backend', jkt: device.jkt, platform: 'ios', user: values.user! });
  const r = await device.register(`${register.replace(/\/$/, '')}/app/v1/devices`, 'ios', attestation);
  process.stderr.write(`registered device ${r.deviceId} for ${values.user} (credential until ${new Date(r.expiresAt).toISOString()})\n`);
  const headers: Record<string, string> = values.data !== undefined ? { 'content-type': 'application/json' } : {};
  const signed = device.sign({ method: values.method!, url, headers, ...(values.data !== undefined ? { body: values.data } : {}) });
  for (const [k, v] of Object.entries({ ...headers, ...signed })) process.stdout.write(`${k}: ${v}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`app-request: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
