/**
 * gRPC server reflection (v1 and v1alpha) with complete file descriptors.
 *
 * proto-loader regroups our .proto files by package and leaves each
 * FileDescriptorProto's `dependency` list empty; strict clients (grpcurl,
 * protobuf-es registries) then refuse the files because the types they use
 * come from files they were never told to import. Here we index every type,
 * make every type reference absolute, fill in `dependency` from the
 * references each file really makes, and answer reflection requests from that
 * repaired set: a file always comes with its transitive imports. The health
 * service's descriptors are added so `grpcurl list` shows
 * `grpc.health.v1.Health` too. The wire protocol (v1 and v1alpha share one
 * message shape) comes from @grpc/reflection's own .proto files.
 */
import type * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import * as grpcJs from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import descriptor from 'protobufjs/ext/descriptor/index.js';

interface DescriptorMessage {
  name?: string;
  nestedType?: DescriptorMessage[];
  enumType?: Array<{ name?: string }>;
  field?: Array<{ name?: string; typeName?: string; jsonName?: string }>;
  extension?: Array<{ typeName?: string; extendee?: string }>;
}
interface DescriptorFile extends DescriptorMessage {
  package?: string;
  dependency?: string[];
  messageType?: DescriptorMessage[];
  service?: Array<{ name?: string; method?: Array<{ name?: string; inputType?: string; outputType?: string }> }>;
}

const FileDescriptorProto = (descriptor as unknown as {
  FileDescriptorProto: { decode(b: Uint8Array): DescriptorFile; encode(f: DescriptorFile): { finish(): Uint8Array } };
}).FileDescriptorProto;

/** Decode every file of the given definitions (first one wins on a name clash). */
function collectFiles(definitions: readonly PackageDefinition[]): Map<string, DescriptorFile> {
  const files = new Map<string, DescriptorFile>();
  for (const def of definitions) {
    for (const entry of Object.values(def)) {
      const protos = (entry as { fileDescriptorProtos?: unknown }).fileDescriptorProtos;
      if (!Array.isArray(protos)) continue;
      for (const bin of protos as Uint8Array[]) {
        const file = FileDescriptorProto.decode(bin);
        if (!file.name) continue;
        const seen = files.get(file.name);
        if (seen === undefined) files.set(file.name, file);
        else mergeFile(seen, file);
      }
    }
  }
  return files;
}

/**
 * proto-loader names its files by package (`google_protobuf.proto`), so two
 * loads (ext_authz, ext_proc) each carry a file of that name holding only the
 * well-known types they import: the union is the file.
 */
function mergeFile(into: DescriptorFile, from: DescriptorFile): void {
  const union = <T extends { name?: string | null }>(a: T[] | undefined, b: T[] | undefined): T[] => {
    const out = [...(a ?? [])];
    for (const x of b ?? []) if (!out.some((y) => y.name === x.name)) out.push(x);
    return out;
  };
  into.messageType = union(into.messageType, from.messageType);
  into.enumType = union(into.enumType, from.enumType);
  into.service = union(into.service, from.service);
}

/** Fully-qualified (leading dot) type name -> name of the file that defines it. */
function indexTypes(files: Map<string, DescriptorFile>): Map<string, string> {
  const owner = new Map<string, string>();
  for (const [name, file] of files) {
    const prefix = file.package ? `.${file.package}` : '';
    const walk = (scope: string, messages: DescriptorMessage[] | undefined, enums: Array<{ name?: string }> | undefined) => {
      for (const e of enums ?? []) owner.set(`${scope}.${e.name}`, name);
      for (const m of messages ?? []) {
        const fqn = `${scope}.${m.name}`;
        owner.set(fqn, name);
        walk(fqn, m.nestedType, m.enumType);
      }
    };
    walk(prefix, file.messageType, file.enumType);
  }
  return owner;
}

/** protoc's JSON name: drop each underscore and upper-case the letter after it. */
function jsonName(field: string): string {
  return field.replace(/_+([a-z0-9]?)/g, (_m, c: string) => c.toUpperCase());
}

/**
 * protobufjs keeps type names as written in the .proto file ("v3.Address"
 * relative to the scope); protoc, and the clients that read descriptors,
 * expect absolute names. Resolve each one by protobuf's scoping rule
 * (innermost scope outwards), rewrite it absolute, and return the files used.
 */
function resolveReferences(file: DescriptorFile, owner: Map<string, string>): Set<string> {
  const used = new Set<string>();
  const resolveName = (ref: string, scope: string): string => {
    if (ref.startsWith('.')) {
      const f = owner.get(ref);
      if (f === undefined) throw new Error(`reflection: ${file.name} uses ${ref}, which no loaded proto file defines`);
      used.add(f);
      return ref;
    }
    for (let s = scope; ; s = s.slice(0, Math.max(0, s.lastIndexOf('.')))) {
      const candidate = `${s}.${ref}`;
      const f = owner.get(candidate);
      if (f !== undefined) {
        used.add(f);
        return candidate;
      }
      if (s === '') throw new Error(`reflection: ${file.name} uses ${ref} (in ${scope || 'the root scope'}), which no loaded proto file defines`);
    }
  };
  const pkg = file.package ? `.${file.package}` : '';
  const walk = (m: DescriptorMessage, scope: string) => {
    for (const f of m.field ?? []) {
      if (f.typeName) f.typeName = resolveName(f.typeName, scope);
      // protoc always fills json_name and readers (grpcurl, protobuf-es) rely on it; protobufjs leaves it out.
      if (!f.jsonName && f.name) f.jsonName = jsonName(f.name);
    }
    for (const x of m.extension ?? []) {
      if (x.typeName) x.typeName = resolveName(x.typeName, scope);
      if (x.extendee) x.extendee = resolveName(x.extendee, scope);
    }
    for (const n of m.nestedType ?? []) walk(n, `${scope}.${n.name}`);
  };
  for (const m of file.messageType ?? []) walk(m, `${pkg}.${m.name}`);
  for (const x of file.extension ?? []) {
    if (x.typeName) x.typeName = resolveName(x.typeName, pkg);
    if (x.extendee) x.extendee = resolveName(x.extendee, pkg);
  }
  for (const s of file.service ?? []) {
    for (const m of s.method ?? []) {
      if (m.inputType) m.inputType = resolveName(m.inputType, pkg);
      if (m.outputType) m.outputType = resolveName(m.outputType, pkg);
    }
  }
  return used;
}

/**
 * The given definitions' files with `dependency` filled in, encoded. Throws
 * (at startup) when a referenced type is defined nowhere: reflection would
 * otherwise hand clients a set they cannot load.
 */
export function completeFileDescriptors(definitions: readonly PackageDefinition[]): Uint8Array[] {
  const files = collectFiles(definitions);
  const owner = indexTypes(files);
  const out: Uint8Array[] = [];
  for (const [name, file] of files) {
    const deps = resolveReferences(file, owner);
    deps.delete(name);
    file.dependency = [...deps].sort();
    out.push(FileDescriptorProto.encode(file).finish());
  }
  return out;
}

/** The repaired set, indexed for reflection answers. */
export class DescriptorIndex {
  private readonly encoded = new Map<string, Uint8Array>();
  private readonly deps = new Map<string, readonly string[]>();
  private readonly symbols = new Map<string, string>();
  readonly services: readonly string[];

  constructor(definitions: readonly PackageDefinition[]) {
    const services: string[] = [];
    for (const bin of completeFileDescriptors(definitions)) {
      const file = FileDescriptorProto.decode(bin);
      const name = file.name!;
      this.encoded.set(name, bin);
      this.deps.set(name, file.dependency ?? []);
      const pkg = file.package ? `${file.package}.` : '';
      for (const [fqn] of indexTypes(new Map([[name, file]]))) this.symbols.set(fqn.slice(1), name);
      for (const svc of file.service ?? []) {
        const fqn = `${pkg}${svc.name}`;
        services.push(fqn);
        this.symbols.set(fqn, name);
        for (const m of svc.method ?? []) this.symbols.set(`${fqn}.${m.name}`, name);
      }
    }
    this.services = services.sort();
  }

  /** The file itself first, then every file it imports, directly or not. */
  withImports(fileName: string): Uint8Array[] | undefined {
    if (!this.encoded.has(fileName)) return undefined;
    const order: string[] = [];
    const seen = new Set<string>();
    const visit = (n: string) => {
      if (seen.has(n)) return;
      seen.add(n);
      order.push(n);
      for (const d of this.deps.get(n) ?? []) visit(d);
    };
    visit(fileName);
    return order.map((n) => this.encoded.get(n)!);
  }

  fileOf(symbol: string): string | undefined {
    return this.symbols.get(symbol.replace(/^\./, ''));
  }
}

interface ReflectionRequest {
  host?: string;
  message_request?: string;
  file_by_filename?: string;
  file_containing_symbol?: string;
  list_services?: string;
  file_containing_extension?: { containing_type?: string; extension_number?: number };
  all_extension_numbers_of_type?: string;
}

function answer(index: DescriptorIndex, req: ReflectionRequest): Record<string, unknown> {
  const base = { valid_host: req.host ?? '', original_request: req };
  const notFound = (what: string) => ({ ...base, error_response: { error_code: grpcJs.status.NOT_FOUND, error_message: what } });
  switch (req.message_request) {
    case 'list_services':
      return { ...base, list_services_response: { service: index.services.map((name) => ({ name })) } };
    case 'file_by_filename': {
      const files = index.withImports(req.file_by_filename ?? '');
      return files ? { ...base, file_descriptor_response: { file_descriptor_proto: files } } : notFound(`file not found: ${req.file_by_filename}`);
    }
    case 'file_containing_symbol': {
      const file = index.fileOf(req.file_containing_symbol ?? '');
      const files = file === undefined ? undefined : index.withImports(file);
      return files ? { ...base, file_descriptor_response: { file_descriptor_proto: files } } : notFound(`symbol not found: ${req.file_containing_symbol}`);
    }
    case 'file_containing_extension':
      // Our protos declare no extensions.
      return notFound(`no extension ${req.file_containing_extension?.extension_number} of ${req.file_containing_extension?.containing_type}`);
    case 'all_extension_numbers_of_type': {
      const t = req.all_extension_numbers_of_type ?? '';
      return index.fileOf(t) === undefined ? notFound(`type not found: ${t}`) : { ...base, all_extension_numbers_response: { base_type_name: t, extension_number: [] } };
    }
    default:
      return { ...base, error_response: { error_code: grpcJs.status.UNIMPLEMENTED, error_message: `unsupported reflection request ${String(req.message_request)}` } };
  }
}

const REFLECTION_PROTO_DIR = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '..', 'proto');

/** Add v1 and v1alpha reflection for every service in `definitions` (plus reflection itself) to `server`. */
export function addReflection(server: Pick<grpc.Server, 'addService'>, definitions: readonly PackageDefinition[]): DescriptorIndex {
  const versions = ['v1', 'v1alpha'] as const;
  const wire = versions.map((v) =>
    protoLoader.loadSync(`grpc/reflection/${v}/reflection.proto`, { includeDirs: [REFLECTION_PROTO_DIR], keepCase: true, oneofs: true, longs: String }),
  );
  const index = new DescriptorIndex([...definitions, ...wire]);
  versions.forEach((v, i) => {
    const pkg = grpcJs.loadPackageDefinition(wire[i]!) as unknown as { grpc: { reflection: Record<string, { ServerReflection: grpcJs.ServiceClientConstructor }> } };
    server.addService(pkg.grpc.reflection[v]!.ServerReflection.service, {
      ServerReflectionInfo: (stream: grpc.ServerDuplexStream<ReflectionRequest, unknown>) => {
        stream.on('data', (req: ReflectionRequest) => stream.write(answer(index, req)));
        stream.on('end', () => stream.end());
        stream.on('error', () => undefined); // a client that hangs up is not our error
      },
    });
  });
  return index;
}
