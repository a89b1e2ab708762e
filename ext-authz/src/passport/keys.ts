/**
 * Signing keys: loaded from PEM or JWK files (a mounted Kubernetes Secret)
 * or generated at start, several at once for rotation with exactly one
 * signing. The public halves form the JWKS served on the admin port.
 */
import { ConfigError } from '../config/errors.js';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { PassportAlgorithm } from './model.js';
import type { PassportConfig, PassportKeyConfig } from './config.js';

export interface PublicJwk {
  readonly kty: string;
  readonly crv: string;
  readonly x: string;
  readonly y?: string;
  readonly kid: string;
  readonly alg: PassportAlgorithm;
  readonly use: 'sig';
}

export interface PassportKey {
  readonly kid: string;
  readonly alg: PassportAlgorithm;
  /** Absent for verify-only keys (a retired key kept in the JWKS until its Passports expire). */
  readonly privateKey: KeyObject | undefined;
  readonly jwk: PublicJwk;
  /** Where it came from, to reuse generated keys across reloads. */
  readonly origin: string;
}



export class KeyRing {
  readonly byKid: ReadonlyMap<string, PassportKey>;
  /** Serialized once: the JWKS is static between reloads. */
  readonly jwksBody: string;
  readonly etag: string;

  constructor(
    readonly active: PassportKey & { readonly privateKey: KeyObject },
    readonly keys: readonly PassportKey[],
  ) {
    this.byKid = new Map(keys.map((k) => [k.kid, k]));
    this.jwksBody = JSON.stringify({ keys: keys.map((k) => k.jwk) });
    this.etag = `"${createHash('sha256').update(this.jwksBody).digest('base64url').slice(0, 27)}"`;
  }
}

function expectedType(alg: PassportAlgorithm): string {
  return alg === 'EdDSA' ? 'an Ed25519 key' : 'an EC P-256 key';
}

function matchesAlg(key: KeyObject, alg: PassportAlgorithm): boolean {
  if (alg === 'EdDSA') return key.asymmetricKeyType === 'ed25519';
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

function toJwk(publicKey: KeyObject, kid: string, alg: PassportAlgorithm): PublicJwk {
  const j = publicKey.export({ format: 'jwk' }) as { kty: string; crv: string; x: string; y?: string };
  return j.y === undefined
    ? { kty: j.kty, crv: j.crv, x: j.x, kid, alg, use: 'sig' }
    : { kty: j.kty, crv: j.crv, x: j.x, y: j.y, kid, alg, use: 'sig' };
}

/** Parses a PEM or JWK file into a private (preferred) or public key object. */
function parseKeyFile(text: string): { privateKey?: KeyObject; publicKey: KeyObject } {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    const jwk = JSON.parse(trimmed) as Record<string, unknown>;
    if (typeof jwk['d'] === 'string') {
      const privateKey = createPrivateKey({ key: jwk as never, format: 'jwk' });
      return { privateKey, publicKey: createPublicKey(privateKey) };
    }
    return { publicKey: createPublicKey({ key: jwk as never, format: 'jwk' }) };
  }
  if (!trimmed.startsWith('-----BEGIN ')) throw new Error('neither a PEM block nor a JWK JSON object');
  if (/-----BEGIN (?:EC |ENCRYPTED )?PRIVATE KEY-----/.test(trimmed)) {
    const privateKey = createPrivateKey(trimmed);
    return { privateKey, publicKey: createPublicKey(privateKey) };
  }
  return { publicKey: createPublicKey(trimmed) };
}

function generate(alg: PassportAlgorithm): KeyObject {
  return alg === 'EdDSA' ? generateKeyPairSync('ed25519').privateKey : generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

function loadOne(entry: PassportKeyConfig, where: string, previous: KeyRing | undefined): PassportKey {
  if (entry.generate) {
    const origin = `generated:${entry.alg}`;
    const old = previous?.byKid.get(entry.id);
    // A reload must not silently rotate a generated key: its Passports would stop verifying.
    if (old && old.origin === origin) return old;
    const privateKey = generate(entry.alg);
    return { kid: entry.id, alg: entry.alg, privateKey, jwk: toJwk(createPublicKey(privateKey), entry.id, entry.alg), origin };
  }
  const file = entry.file!;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('passport.keys', [`${where}.file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  let parsed: { privateKey?: KeyObject; publicKey: KeyObject };
  try {
    parsed = parseKeyFile(text);
  } catch (err) {
    throw new ConfigError('passport.keys', [`${where}.file: ${file} is not a PEM or JWK key (${(err as Error).message.split('\n')[0]}); mount a PKCS#8 PEM or a JWK with "d"`]);
  }
  if (parsed.publicKey.type !== 'public' || !matchesAlg(parsed.publicKey, entry.alg)) {
    throw new ConfigError('passport.keys', [`${where}.file: ${file} holds a ${parsed.publicKey.asymmetricKeyType ?? parsed.publicKey.type} key, but alg ${entry.alg} needs ${expectedType(entry.alg)}`]);
  }
  return { kid: entry.id, alg: entry.alg, privateKey: parsed.privateKey, jwk: toJwk(parsed.publicKey, entry.id, entry.alg), origin: `file:${file}` };
}

/** Loads every configured key; throws a ConfigError listing each bad entry. */
export function loadKeyRing(keys: PassportConfig['keys'], previous?: KeyRing): KeyRing {
  const path = 'passport.keys';
  const loaded: PassportKey[] = [];
  const problems: string[] = [];
  keys.entries.forEach((entry, i) => {
    try {
      loaded.push(loadOne(entry, `${path}.entries[${i}]`, previous));
    } catch (err) {
      problems.push(...(err instanceof ConfigError ? err.problems : [`${path}.entries[${i}]: ${(err as Error).message}`]));
    }
  });
  if (problems.length > 0) throw new ConfigError('passport.keys', problems);
  const active = loaded.find((k) => k.kid === keys.active);
  if (!active) throw new ConfigError('passport.keys', [`${path}.active: names no key`]);
  if (active.privateKey === undefined) {
    const i = keys.entries.findIndex((e) => e.id === keys.active);
    throw new ConfigError('passport.keys', [`${path}.active: key "${keys.active}" (${path}.entries[${i}].file) holds only a public key; the signing key needs its private key`]);
  }
  return new KeyRing(active as PassportKey & { privateKey: KeyObject }, loaded);
}
