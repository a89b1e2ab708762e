/**
 * Loads Passgate's own hand-written ext_authz v3 protos (under `<repo>/proto`)
 * with @grpc/proto-loader. The same PackageDefinition can be handed to gRPC
 * reflection so clients see exactly what the server speaks.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';

/** Fully-qualified names used across the service. */
export const AUTHORIZATION_SERVICE_NAME = 'envoy.service.auth.v3.Authorization';
export const CHECK_METHOD_PATH = '/envoy.service.auth.v3.Authorization/Check';

/** Proto files (relative to PROTO_ROOT) that make up the service; imports are pulled in automatically. */
export const PROTO_FILES: readonly string[] = Object.freeze([
  'envoy/service/auth/v3/external_auth.proto',
  'envoy/service/auth/v3/attribute_context.proto',
  'envoy/config/core/v3/address.proto',
  'envoy/config/core/v3/base.proto',
  'envoy/type/v3/http_status.proto',
  'google/rpc/status.proto',
]);

/** proto-loader options; the decoded shapes in ./types.ts depend on these. */
export const PROTO_LOADER_OPTIONS: Readonly<protoLoader.Options> = Object.freeze({
  keepCase: true,
  longs: String,
  enums: Number,
  defaults: false,
  oneofs: true,
});

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Walk up from `startDir` to the first folder holding both `package.json` and
 * `proto/` (works from `ext-authz/src/proto` under tsx and from
 * `dist/ext-authz/src/proto` when compiled).
 */
export function findProtoRoot(startDir: string): string {
  let dir = resolve(startDir);
  for (;;) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(dir, 'package.json')) && isDir(candidate) &&
        existsSync(join(candidate, PROTO_FILES[0]!))) {
      return candidate;
    }
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(`passgate: cannot find proto/ directory above ${startDir}`);
    }
    dir = parent;
  }
}

/** Absolute path of `<repo>/proto`. */
export const PROTO_ROOT: string = findProtoRoot(dirname(fileURLToPath(import.meta.url)));

export interface LoadedAuthorizationService {
  service: grpc.ServiceDefinition;
  packageDefinition: PackageDefinition;
}

let cached: LoadedAuthorizationService | undefined;

/** Load (once) our protos and return the Authorization service definition. */
export function loadAuthorizationService(): LoadedAuthorizationService {
  if (cached) return cached;
  const packageDefinition = protoLoader.loadSync([...PROTO_FILES], {
    ...PROTO_LOADER_OPTIONS,
    includeDirs: [PROTO_ROOT],
  });
  const def = packageDefinition[AUTHORIZATION_SERVICE_NAME];
  if (!def || !isServiceDefinition(def)) {
    throw new Error(`passgate: ${AUTHORIZATION_SERVICE_NAME} not found in ${PROTO_ROOT}`);
  }
  cached = { service: def as unknown as grpc.ServiceDefinition, packageDefinition };
  return cached;
}

function isServiceDefinition(def: unknown): boolean {
  // A ServiceDefinition is a plain map of method name -> MethodDefinition;
  // message/enum entries carry `format` instead.
  return typeof def === 'object' && def !== null && !('format' in def) &&
    'Check' in def;
}

/** A typed Authorization client (the local gateway, tests and benchmarks call Check as Envoy does). */
export type AuthorizationClient = grpc.Client & {
  Check(
    req: import('./types.js').CheckRequest,
    meta: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: import('./types.js').CheckResponse) => void,
  ): grpc.ClientUnaryCall;
};

export function createAuthorizationClient(target: string, credentials = grpc.credentials.createInsecure()): AuthorizationClient {
  const Ctor = grpc.makeClientConstructor(loadAuthorizationService().service, 'Authorization');
  return new Ctor(target, credentials) as unknown as AuthorizationClient;
}
