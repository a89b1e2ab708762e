/**
 * The compiled form of `identity.mtls`: rules, trust anchors (CA files read
 * and parsed), deny sets. Compiled once per config object and memoized, so
 * every `mtls` stage of one config shares it and a reload compiles afresh.
 */
import { readFileSync } from 'node:fs';
import type { MtlsConfig, XfccOptions } from './config.js';
import { compileRules, type CompiledRule } from './mapping.js';
import { ConfigError } from '../config/errors.js';
import { decodeChain, nodeCertificate, type TrustAnchors } from './certificate.js';

export interface CompiledMtls {
  readonly xfcc: XfccOptions;
  readonly trustedProxies: ReadonlySet<string>;
  readonly onPeerMismatch: 'deny' | 'ignore';
  readonly anchors: TrustAnchors | undefined;
  readonly denySerials: ReadonlySet<string>;
  readonly denyFingerprints: ReadonlySet<string>;
  readonly skewMs: number;
  readonly cacheSize: number;
  readonly cacheBytes: number;
  /** Longest `source.certificate` accepted (characters of the URL-encoded PEM). */
  readonly maxCertificateBytes: number;
  readonly rules: readonly CompiledRule[];
}


const memo = new WeakMap<MtlsConfig, CompiledMtls>();

function loadAnchors(ca: NonNullable<MtlsConfig['ca']>, path: string, problems: string[]): TrustAnchors | undefined {
  const roots: TrustAnchors['roots'][number][] = [];
  const add = (text: string, where: string) => {
    const r = decodeChain(text, 1000);
    if (!r.ok) problems.push(`${where}: ${r.error}`);
    else if (r.certs.length === 0) problems.push(`${where}: holds no PEM CERTIFICATE block`);
    else {
      for (const [i, c] of r.certs.entries()) {
        // Anchors also get OpenSSL's parse now (their keys verify every chain): what it refuses is a startup error.
        try {
          nodeCertificate(c);
        } catch (e) {
          problems.push(`${where}: certificate ${i + 1} (${c.facts.subject}) is refused by OpenSSL (${(e as Error).message})`);
          return;
        }
      }
      roots.push(...r.certs);
    }
  };
  if (ca.pem !== undefined) add(ca.pem, `${path}.ca.pem`);
  ca.files.forEach((file, i) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      problems.push(`${path}.ca.files[${i}]: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); mount the CA bundle or fix the path`);
      return;
    }
    add(text, `${path}.ca.files[${i}] (${file})`);
  });
  return roots.length > 0 ? { roots } : undefined;
}

/** Compiles (memoized per config object); throws a ConfigError naming each bad key. */
export function compileMtls(cfg: MtlsConfig, path = 'identity.mtls'): CompiledMtls {
  const cached = memo.get(cfg);
  if (cached) return cached;
  const problems: string[] = [];
  let rules: CompiledRule[] = [];
  try {
    rules = compileRules(cfg.rules, `${path}.rules`);
  } catch (e) {
    if (e instanceof ConfigError) problems.push(...e.problems);
    else throw e;
  }
  const anchors = cfg.ca ? loadAnchors(cfg.ca, path, problems) : undefined;
  if (problems.length > 0) throw new ConfigError('identity.mtls', problems);
  const compiled: CompiledMtls = {
    xfcc: cfg.xfcc,
    trustedProxies: new Set(cfg.trustedProxies),
    onPeerMismatch: cfg.onPeerMismatch,
    anchors,
    denySerials: new Set(cfg.deny.serials.map((s) => s.replace(/^0+(?=.)/, ''))),
    denyFingerprints: new Set(cfg.deny.fingerprints),
    skewMs: cfg.clockSkewSeconds * 1000,
    cacheSize: cfg.cacheSize,
    cacheBytes: cfg.cacheBytes,
    maxCertificateBytes: cfg.maxCertificateBytes,
    rules,
  };
  memo.set(cfg, compiled);
  return compiled;
}
