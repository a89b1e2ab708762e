/**
 * RFC 9421 HTTP Message Signatures, verifier side, independent of the stage:
 * `Signature-Input` / `Signature` parsed with `structured-headers` (RFC 8941 /
 * RFC 9651), the signature base rebuilt from the request (§2.5), the
 * signature checked with node:crypto on a cached KeyObject. Only what an app
 * gateway needs: request derived components (@method, @target-uri,
 * @authority, @scheme, @path, @query) and plain header fields without
 * component parameters; algorithms pinned to ecdsa-p256-sha256 and ed25519.
 */
import { asciiLower } from '../pipeline/text.js';
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { parseDictionary, serializeInnerList, Token, type BareItem, type InnerList, type Item, type Parameters } from 'structured-headers';

export const SIGNATURE_ALGORITHMS = ['ecdsa-p256-sha256', 'ed25519'] as const;
export type SignatureAlgorithm = (typeof SIGNATURE_ALGORITHMS)[number];

/** The request as the signature base needs it (raw :path, not the normalised one: the client signed what it sent). */
export interface SignedRequest {
  readonly method: string;
  readonly scheme: string;
  /** Host[:port] as sent (lowercased here). */
  readonly authority: string;
  /** The raw request target: path and query. */
  readonly target: string;
  /** Lowercased names. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface ParsedSignature {
  readonly label: string;
  readonly components: readonly string[];
  readonly params: {
    readonly created: number | undefined;
    readonly expires: number | undefined;
    readonly nonce: string | undefined;
    readonly keyid: string | undefined;
    readonly alg: string | undefined;
    readonly tag: string | undefined;
  };
  /** The serialized inner list, the value of `@signature-params`. */
  readonly signatureParams: string;
  readonly signature: Buffer;
}

export type Failure = { readonly ok: false; readonly reason: string; readonly detail: string };
export type ParseResult = { readonly ok: true; readonly sig: ParsedSignature } | Failure;

const fail = (reason: string, detail: string): Failure => ({ ok: false, reason, detail });

const DERIVED = new Set(['@method', '@target-uri', '@authority', '@scheme', '@path', '@query', '@request-target']);
const KNOWN_PARAMS = new Set(['created', 'expires', 'nonce', 'keyid', 'alg', 'tag']);
const COMPONENT_NAME = /^(@[a-z-]+|[!#$%&'*+.^_`|~0-9a-z-]+)$/;

/**
 * Keys that occur more than once in the top-level dictionary and in the
 * parameters of the member `label`: RFC 8941 parsers keep the last one
 * silently, so a duplicated `created` or `sig1=` would otherwise pass
 * unnoticed. A small scan that skips strings and byte sequences.
 */
export function duplicateKeys(text: string, label: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  let memberKey: string | undefined;
  let atMemberStart = true;
  let params: Set<string> | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      continue;
    }
    if (c === ':' && depth === 0 && !atMemberStart) {
      for (i++; i < text.length && text[i] !== ':'; i++);
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      atMemberStart = true;
      params = undefined;
      continue;
    } else if (atMemberStart && c !== ' ' && c !== '\t') {
      const m = /^[a-z*][a-z0-9_.*-]*/.exec(text.slice(i));
      if (m) {
        memberKey = m[0];
        if (seen.has(memberKey)) return `label "${memberKey}" appears twice`;
        seen.add(memberKey);
        params = memberKey === label ? new Set() : undefined;
        i += m[0].length - 1;
      }
      atMemberStart = false;
      continue;
    } else if (c === ';' && depth === 0 && params) {
      const m = /^;\s*([a-z*][a-z0-9_.*-]*)/.exec(text.slice(i));
      if (m) {
        if (params.has(m[1]!)) return `parameter "${m[1]}" appears twice in "${label}"`;
        params.add(m[1]!);
      }
    }
  }
  return undefined;
}

function intParam(p: Parameters, name: string): number | undefined | Failure {
  if (!p.has(name)) return undefined;
  const v = p.get(name);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return fail('signature_params_invalid', `${name} must be a non-negative integer`);
  return v;
}

function stringParam(p: Parameters, name: string): string | undefined | Failure {
  if (!p.has(name)) return undefined;
  const v = p.get(name);
  if (typeof v !== 'string') return fail('signature_params_invalid', `${name} must be a string`);
  return v;
}

const isFailure = (v: unknown): v is Failure => typeof v === 'object' && v !== null && (v as Failure).ok === false;

/** Parses the `label` member of both fields; every problem is a precise failure, never a throw. */
export function parseSignature(inputHeader: string | undefined, signatureHeader: string | undefined, label: string, maxBytes: number): ParseResult {
  if (inputHeader === undefined || inputHeader === '') return fail('signature_missing', 'no Signature-Input header');
  if (signatureHeader === undefined || signatureHeader === '') return fail('signature_missing', 'no Signature header');
  if (inputHeader.length > maxBytes || signatureHeader.length > maxBytes) return fail('signature_too_large', `Signature-Input or Signature is longer than ${maxBytes} bytes`);
  let inputs: Map<string, Item | InnerList>;
  let sigs: Map<string, Item | InnerList>;
  try {
    inputs = parseDictionary(inputHeader);
  } catch (err) {
    return fail('signature_input_syntax', `Signature-Input is not a structured dictionary: ${(err as Error).message}`);
  }
  try {
    sigs = parseDictionary(signatureHeader);
  } catch (err) {
    return fail('signature_syntax', `Signature is not a structured dictionary: ${(err as Error).message}`);
  }
  const dupInput = duplicateKeys(inputHeader, label);
  if (dupInput) return fail('signature_params_duplicated', `Signature-Input: ${dupInput}`);
  const dupSig = duplicateKeys(signatureHeader, '\u0000');
  if (dupSig) return fail('signature_params_duplicated', `Signature: ${dupSig}`);
  const input = inputs.get(label);
  const sigItem = sigs.get(label);
  if (input === undefined) return fail('signature_label_missing', `Signature-Input has no "${label}" member (labels: ${[...inputs.keys()].join(', ') || 'none'})`);
  if (sigItem === undefined) return fail('signature_label_missing', `Signature has no "${label}" member`);
  if (!Array.isArray(input[0])) return fail('signature_input_syntax', `Signature-Input "${label}" must be an inner list of components`);
  if (Array.isArray(sigItem[0]) || !(sigItem[0] instanceof ArrayBuffer)) return fail('signature_syntax', `Signature "${label}" must be a byte sequence`);
  const [items, p] = input as InnerList;
  const components: string[] = [];
  for (const [value, cp] of items) {
    if (typeof value !== 'string') return fail('component_invalid', 'covered components must be strings');
    if (!COMPONENT_NAME.test(value)) return fail('component_invalid', `component "${value}" is not a lowercase field name or derived component`);
    if (cp.size > 0) return fail('component_unsupported', `component "${value}" has parameters (${[...cp.keys()].join(', ')}); none are supported here`);
    if (value.startsWith('@') && !DERIVED.has(value)) return fail('component_unsupported', `derived component "${value}" is not supported on requests here`);
    if (value === '@request-target') return fail('component_unsupported', '@request-target is not supported (use @target-uri or @path)');
    if (components.includes(value)) return fail('component_duplicated', `component "${value}" is covered twice`);
    components.push(value);
  }
  for (const k of p.keys()) if (!KNOWN_PARAMS.has(k)) return fail('signature_params_invalid', `unknown signature parameter "${k}"`);
  const created = intParam(p, 'created');
  const expires = intParam(p, 'expires');
  const nonce = stringParam(p, 'nonce');
  const keyid = stringParam(p, 'keyid');
  const alg = stringParam(p, 'alg');
  const tag = stringParam(p, 'tag');
  for (const v of [created, expires, nonce, keyid, alg, tag]) if (isFailure(v)) return v;
  let signatureParams: string;
  try {
    signatureParams = serializeInnerList(input as InnerList);
  } catch (err) {
    return fail('signature_input_syntax', `Signature-Input "${label}" cannot be serialized: ${(err as Error).message}`);
  }
  return {
    ok: true,
    sig: {
      label,
      components,
      params: {
        created: created as number | undefined,
        expires: expires as number | undefined,
        nonce: nonce as string | undefined,
        keyid: keyid as string | undefined,
        alg: alg as string | undefined,
        tag: tag as string | undefined,
      },
      signatureParams,
      signature: Buffer.from(sigItem[0] as ArrayBuffer),
    },
  };
}

function splitTarget(target: string): { path: string; query: string | undefined } {
  const q = target.indexOf('?');
  return q === -1 ? { path: target, query: undefined } : { path: target.slice(0, q), query: target.slice(q + 1) };
}

/** One component's value (§2.1, §2.2), or a failure when the request lacks it. */
export function componentValue(name: string, req: SignedRequest): string | Failure {
  switch (name) {
    case '@method':
      return req.method; // as sent: RFC 9421 §2.2.1 transforms no case (methods are case-sensitive)
    case '@scheme':
      return asciiLower(req.scheme);
    case '@authority':
      return asciiLower(req.authority);
    case '@path':
      return splitTarget(req.target).path || '/';
    case '@query': {
      const q = splitTarget(req.target).query;
      return `?${q ?? ''}`;
    }
    case '@target-uri':
      return `${asciiLower(req.scheme)}://${asciiLower(req.authority)}${req.target}`;
    default: {
      const v = req.headers[name];
      if (v === undefined) return fail('component_missing', `covered header "${name}" is not in the request`);
      // Field values are trimmed; repeats arrive joined with "," from Envoy and are signed as one value.
      return v.trim();
    }
  }
}

/** The signature base (§2.5), or a failure naming the missing component. */
export function signatureBase(sig: Pick<ParsedSignature, 'components' | 'signatureParams'>, req: SignedRequest): string | Failure {
  let out = '';
  for (const c of sig.components) {
    const v = componentValue(c, req);
    if (typeof v !== 'string') return v;
    if (/[\r\n]/.test(v)) return fail('component_invalid', `component "${c}" contains a line break`);
    out += `"${c}": ${v}\n`;
  }
  return `${out}"@signature-params": ${sig.signatureParams}`;
}

/** The algorithm a key type implies; a declared `alg` must agree (no algorithm confusion). */
export function algorithmOfKey(key: KeyObject): SignatureAlgorithm | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256-sha256';
  return undefined;
}

/** Verifies `signature` over `base` (ECDSA signatures are r||s, 64 bytes, as RFC 9421 §3.3.4 says). */
export function verifyBase(alg: SignatureAlgorithm, key: KeyObject, base: string, signature: Buffer): boolean {
  const data = Buffer.from(base, 'utf8');
  try {
    if (alg === 'ed25519') return signature.length === 64 && cryptoVerify(null, data, key, signature);
    return signature.length === 64 && cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    return false;
  }
}

/** Builds a Signature-Input member for a signer (the SDK): the same serializer the verifier uses. */
export function serializeSignatureParams(components: readonly string[], params: Readonly<Record<string, string | number>>): string {
  const p: Parameters = new Map<string, BareItem>();
  for (const [k, v] of Object.entries(params)) p.set(k, v);
  return serializeInnerList([components.map((c): Item => [c, new Map()]), p]);
}

export { Token };
