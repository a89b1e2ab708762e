/**
 * Loads our hand-written ext_proc v3 protos (proto/envoy/service/ext_proc)
 * with the same proto-loader options as Check, and the decoded shapes the
 * processor reads and writes (snake_case, every field optional, bytes as
 * Buffer, oneofs with a virtual discriminator).
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { PackageDefinition } from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS, PROTO_ROOT } from '../proto/load.js';
import type { HeaderValueOption } from '../proto/types.js';

export const EXT_PROC_SERVICE_NAME = 'envoy.service.ext_proc.v3.ExternalProcessor';
export const PROCESS_METHOD_PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
export const EXT_PROC_PROTO_FILES: readonly string[] = Object.freeze([
  'envoy/service/ext_proc/v3/external_processor.proto',
  'envoy/extensions/filters/http/ext_proc/v3/processing_mode.proto',
]);

export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer | Uint8Array;
}

export interface HttpHeaders {
  headers?: { headers?: HeaderValue[] };
  end_of_stream?: boolean;
}

export interface HttpBody {
  body?: Buffer | Uint8Array;
  end_of_stream?: boolean;
}

export interface ProcessingRequest {
  request_headers?: HttpHeaders;
  response_headers?: HttpHeaders;
  request_body?: HttpBody;
  response_body?: HttpBody;
  request_trailers?: { trailers?: { headers?: HeaderValue[] } };
  response_trailers?: { trailers?: { headers?: HeaderValue[] } };
  request?: 'request_headers' | 'response_headers' | 'request_body' | 'response_body' | 'request_trailers' | 'response_trailers';
  metadata_context?: import('../proto/types.js').Metadata;
  attributes?: Record<string, import('../proto/types.js').Struct>;
  observability_mode?: boolean;
}

export interface HeaderMutation {
  set_headers?: HeaderValueOption[];
  remove_headers?: string[];
}

export const CommonStatus = { CONTINUE: 0, CONTINUE_AND_REPLACE: 1 } as const;
export const HeaderSendMode = { DEFAULT: 0, SEND: 1, SKIP: 2 } as const;
export const BodySendMode = { NONE: 0, STREAMED: 1, BUFFERED: 2, BUFFERED_PARTIAL: 3 } as const;

export interface CommonResponse {
  status?: number;
  header_mutation?: HeaderMutation;
  body_mutation?: { body?: Buffer | Uint8Array; clear_body?: boolean };
  trailers?: { headers?: HeaderValue[] };
  clear_route_cache?: boolean;
}

export interface ProcessingMode {
  request_header_mode?: number;
  response_header_mode?: number;
  request_body_mode?: number;
  response_body_mode?: number;
  request_trailer_mode?: number;
  response_trailer_mode?: number;
}

export interface ImmediateResponse {
  status?: { code?: number };
  headers?: HeaderMutation;
  body?: Buffer | Uint8Array;
  grpc_status?: { status?: number };
  details?: string;
}

export interface ProcessingResponse {
  request_headers?: { response?: CommonResponse };
  response_headers?: { response?: CommonResponse };
  request_body?: { response?: CommonResponse };
  response_body?: { response?: CommonResponse };
  request_trailers?: { header_mutation?: HeaderMutation };
  response_trailers?: { header_mutation?: HeaderMutation };
  immediate_response?: ImmediateResponse;
  mode_override?: ProcessingMode;
  dynamic_metadata?: import('../proto/types.js').Struct;
  override_message_timeout?: { seconds?: string | number; nanos?: number };
  response?: string;
}

export interface LoadedExtProc {
  service: grpc.ServiceDefinition;
  packageDefinition: PackageDefinition;
}

let cached: LoadedExtProc | undefined;

export function loadExtProcService(): LoadedExtProc {
  if (cached) return cached;
  const packageDefinition = protoLoader.loadSync([...EXT_PROC_PROTO_FILES], { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
  const def = packageDefinition[EXT_PROC_SERVICE_NAME] as unknown as grpc.ServiceDefinition | undefined;
  if (!def || !('Process' in def)) throw new Error(`passgate: ${EXT_PROC_SERVICE_NAME} not found in ${PROTO_ROOT}`);
  cached = { service: def, packageDefinition };
  return cached;
}

/** A Process client as Envoy drives it (the local gateway, tests, benchmarks). */
export type ExtProcClient = grpc.Client & {
  Process(meta?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
};

export function createExtProcClient(target: string, credentials = grpc.credentials.createInsecure()): ExtProcClient {
  const Ctor = grpc.makeClientConstructor(loadExtProcService().service, 'ExternalProcessor');
  return new Ctor(target, credentials) as unknown as ExtProcClient;
}

/** Header value as Envoy sends it: raw_value (Envoy >= 1.27) or value. */
export function headerValue(h: HeaderValue): string {
  if (h.raw_value !== undefined && h.raw_value.length > 0) return Buffer.from(h.raw_value).toString('latin1');
  return h.value ?? '';
}
