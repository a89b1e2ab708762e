/**
 * Shared helpers for proving a hand-written proto set wire compatible with the
 * official Envoy protos shipped in @grpc/grpc-js-xds/deps: loading both sides,
 * a structural comparator (field ids, types, labels, oneofs, enum values,
 * method signatures) and a both-directions byte comparison of one method's
 * codecs. Used by test/proto/wire-compat.test.ts (ext_authz) and
 * test/e2ee/wire-compat.test.ts (ext_proc).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
export const XDS_DEPS = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
export const OFFICIAL_INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(XDS_DEPS, d));
// protobufjs ships google/protobuf/descriptor.proto (needed by the annotation protos).
export const PROTOBUFJS_DIR = dirname(require.resolve('protobufjs/package.json'));

/** Load a protobufjs Root resolving imports against include dirs (well-known types come bundled). */
export function loadRoot(entries: string[], includeDirs: string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    for (const dir of includeDirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync(entries, { keepCase: true });
  root.resolveAll();
  return root;
}

/** A field we define on purpose although the shipped upstream copy lacks it. */
export interface KnownExtraField {
  id: number;
  type: string;
  oneof: string;
}

interface FieldSig {
  id: number;
  type: string;
  label: 'single' | 'repeated' | 'map';
  keyType?: string;
  oneof?: string;
}

function fieldSig(f: protobuf.Field): FieldSig {
  f.resolve();
  const sig: FieldSig = {
    id: f.id,
    type: f.resolvedType ? f.resolvedType.fullName : f.type,
    label: f instanceof protobuf.MapField ? 'map' : f.repeated ? 'repeated' : 'single',
  };
  if (f instanceof protobuf.MapField) sig.keyType = f.keyType;
  if (f.partOf) sig.oneof = f.partOf.name;
  return sig;
}

export interface Defined {
  messages: protobuf.Type[];
  enums: protobuf.Enum[];
  services: protobuf.Service[];
}

/** Everything defined in a root outside google.protobuf (the bundled well-known types). */
export function collectDefined(ns: protobuf.NamespaceBase, out: Defined = { messages: [], enums: [], services: [] }): Defined {
  for (const obj of ns.nestedArray) {
    if (obj.fullName.startsWith('.google.protobuf')) continue;
    if (obj instanceof protobuf.Type) out.messages.push(obj);
    else if (obj instanceof protobuf.Enum) out.enums.push(obj);
    else if (obj instanceof protobuf.Service) out.services.push(obj);
    if (obj instanceof protobuf.Namespace) collectDefined(obj, out); // Type and Service extend Namespace
  }
  return out;
}

/** Returns human-readable mismatches between our root and the official one (empty = compatible). */
export function compareRoots(mine: protobuf.Root, official: protobuf.Root, knownExtra: Record<string, KnownExtraField> = {}): string[] {
  const problems: string[] = [];
  const defined = collectDefined(mine);
  for (const t of defined.messages) {
    const up = official.lookup(t.fullName);
    if (!(up instanceof protobuf.Type)) {
      problems.push(`${t.fullName}: no such message upstream`);
      continue;
    }
    for (const f of t.fieldsArray) {
      const key = `${t.fullName}.${f.name}`;
      const mineSig = fieldSig(f);
      const upField = up.fields[f.name];
      if (!upField) {
        const extra = knownExtra[key];
        if (!extra) {
          problems.push(`${key}: field not present upstream`);
        } else {
          if (mineSig.id !== extra.id || mineSig.type !== extra.type || mineSig.oneof !== extra.oneof) {
            problems.push(`${key}: documented extra field has ${JSON.stringify(mineSig)}`);
          }
          const clash = up.fieldsById[extra.id];
          if (clash) problems.push(`${key}: id ${extra.id} is used upstream by ${clash.name}`);
        }
        continue;
      }
      const upSig = fieldSig(upField);
      for (const k of ['id', 'type', 'label', 'keyType', 'oneof'] as const) {
        if (mineSig[k] !== upSig[k]) {
          problems.push(`${key}: ${k} ${String(mineSig[k])} != upstream ${String(upSig[k])}`);
        }
      }
    }
    for (const upField of up.fieldsArray) {
      if (!t.fields[upField.name]) problems.push(`${t.fullName}.${upField.name}: upstream field missing from ours`);
    }
  }
  for (const e of defined.enums) {
    const up = official.lookup(e.fullName);
    if (!(up instanceof protobuf.Enum)) {
      problems.push(`${e.fullName}: no such enum upstream`);
      continue;
    }
    try {
      assert.deepStrictEqual({ ...e.values }, { ...up.values });
    } catch {
      problems.push(`${e.fullName}: values ${JSON.stringify(e.values)} != upstream ${JSON.stringify(up.values)}`);
    }
  }
  for (const s of defined.services) {
    const up = official.lookup(s.fullName);
    if (!(up instanceof protobuf.Service)) {
      problems.push(`${s.fullName}: no such service upstream`);
      continue;
    }
    const names = (svc: protobuf.Service): string[] => svc.methodsArray.map((m) => m.name).sort();
    if (names(s).join() !== names(up).join()) problems.push(`${s.fullName}: methods ${names(s)} != ${names(up)}`);
    for (const m of s.methodsArray) {
      const um = up.methods[m.name];
      if (!um) continue;
      m.resolve();
      um.resolve();
      const sigOf = (x: protobuf.Method): string =>
        `${x.resolvedRequestType?.fullName}${x.requestStream ? '(stream)' : ''}->` +
        `${x.resolvedResponseType?.fullName}${x.responseStream ? '(stream)' : ''}`;
      if (sigOf(m) !== sigOf(um)) problems.push(`${s.fullName}.${m.name}: ${sigOf(m)} != ${sigOf(um)}`);
    }
  }
  return problems;
}


/**
 * Removes proto-loader's virtual oneof discriminator keys (oneofs: true) and
 * turns Uint8Array into Buffer, guided by the message Type, so a decoded object
 * can be compared with the object that was encoded.
 */
export function canonical(value: unknown, type: protobuf.Type): unknown {
  if (value === null || typeof value !== 'object') return value;
  const src = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) {
    const field = type.fields[k];
    if (!field) {
      if (type.oneofs?.[k] && typeof v === 'string') continue; // virtual discriminator
      out[k] = v; // unknown key: keep so the comparison fails loudly
      continue;
    }
    field.resolve();
    const sub = field.resolvedType instanceof protobuf.Type ? field.resolvedType : undefined;
    const conv = (x: unknown): unknown =>
      sub ? canonical(x, sub) : x instanceof Uint8Array && !Buffer.isBuffer(x) ? Buffer.from(x) : x;
    if (field instanceof protobuf.MapField) {
      out[k] = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([mk, mv]) => [mk, conv(mv)]));
    } else if (field.repeated) {
      out[k] = (v as unknown[]).map(conv);
    } else {
      out[k] = conv(v);
    }
  }
  return out;
}

/** The codec half of a grpc-js MethodDefinition. */
export interface MethodCodec {
  requestSerialize: (v: unknown) => Buffer;
  requestDeserialize: (b: Buffer) => unknown;
  responseSerialize: (v: unknown) => Buffer;
  responseDeserialize: (b: Buffer) => unknown;
}

/** A method of a grpc-js service definition, checked to exist. */
export function methodOf(def: unknown, name: string): MethodCodec & { path: string } {
  const m = (def as Record<string, unknown> | undefined)?.[name];
  assert.ok(m, `${name} method missing`);
  return m as MethodCodec & { path: string };
}

/**
 * Encodes `input` with both sides (the bytes must be identical and non-trivial), then
 * decodes each side's bytes with the other: both must give back the input, and agree.
 */
export function assertWireIdentical(
  ours: MethodCodec,
  official: MethodCodec,
  direction: 'request' | 'response',
  type: protobuf.Type,
  input: unknown,
): void {
  const [serialize, deserialize] =
    direction === 'request' ? (['requestSerialize', 'requestDeserialize'] as const) : (['responseSerialize', 'responseDeserialize'] as const);
  const oursBytes = ours[serialize](input);
  const officialBytes = official[serialize](input);
  assert.ok(oursBytes.length > 10, `only ${oursBytes.length} bytes encoded`);
  assert.deepEqual(oursBytes, officialBytes, 'both encoders must produce identical bytes');
  const decodedByOfficial = official[deserialize](oursBytes);
  const decodedByOurs = ours[deserialize](officialBytes);
  assert.deepStrictEqual(canonical(decodedByOfficial, type), canonical(input, type));
  assert.deepStrictEqual(canonical(decodedByOurs, type), canonical(input, type));
  assert.deepStrictEqual(decodedByOurs, decodedByOfficial);
}
