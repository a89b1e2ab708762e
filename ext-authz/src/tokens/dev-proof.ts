/**
 * `npm run proof -- <url> [method] [subject]`: prints a fresh request JWT for
 * the embedded default's `web` route, signed with the DEVELOPMENT-ONLY
 * device key below (its public half is registered in default.yaml as
 * tokens.clients.dev-browser). Never register this key anywhere real.
 */
import { createPrivateKey, randomBytes, sign } from 'node:crypto';

const DEV_BROWSER_KEY = {
  kty: 'EC',
  crv: 'P-256',
  x: 'hZzebCv9KgIpeqLdquw1NC42-yPK7vQV_OEJA0Ozs84',
  y: 'ercjwDHASK2ZiuGAha9Iw-hn2gX8yiSxgjqSiUifX7E',
  d: 'kQRlWyWzrQTverUgmimFzkyFq8pxsACEtQozrtQYi3c',
};

const [url = 'http://localhost:8080/web/hello', method = 'GET', subject = 'alice'] = process.argv.slice(2);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const iat = Math.floor(Date.now() / 1000);
const input = `${b64({ typ: 'request+jwt', alg: 'ES256', kid: 'dev-browser-1' })}.${b64({ iss: 'dev-browser', sub: subject, jti: randomBytes(16).toString('base64url'), iat, exp: iat + 30, htm: method.toUpperCase(), htu: url })}`;
const key = createPrivateKey({ key: DEV_BROWSER_KEY, format: 'jwk' });
process.stdout.write(`${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}\n`);
