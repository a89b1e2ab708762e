/**
 * The one place @peculiar/x509 is loaded. It depends on tsyringe, which
 * needs a Reflect metadata polyfill loaded first (else it throws at import);
 * ES modules evaluate imports in order, so the polyfill line must stay first.
 * It also needs a WebCrypto provider: Node's own.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
