/**
 * Decoded shapes of the ext_authz v3 messages as @grpc/proto-loader produces
 * them with the options in ./load.ts (`keepCase: true, longs: String,
 * enums: Number, defaults: false, oneofs: true`):
 *  - field names are the proto snake_case names;
 *  - every field is optional (unset scalars, messages and empty maps/lists are
 *    simply absent on decode);
 *  - int64 arrives as a decimal string, bytes as a Buffer, enums as numbers;
 *  - oneofs additionally expose a virtual property naming the set member;
 *  - google.protobuf.Value/Struct keep protobufjs' camelCase names
 *    (`stringValue`, not `string_value`) even with keepCase.
 * On encode, proto-loader accepts the same shapes (strings/numbers for int64,
 * Buffer/Uint8Array/base64 for bytes).
 */

// ---- google.protobuf well-known types ------------------------------------

export interface Timestamp {
  /** int64 seconds; a decimal string on decode, number or string on encode. */
  seconds?: string | number;
  nanos?: number;
}

export interface Any {
  type_url?: string;
  value?: Buffer | Uint8Array;
}

export interface BoolValue {
  value?: boolean;
}

export type NullValue = 0;

export interface Value {
  nullValue?: NullValue;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: Struct;
  listValue?: ListValue;
  /** oneof discriminator (present on decode with `oneofs: true`). */
  kind?: 'nullValue' | 'numberValue' | 'stringValue' | 'boolValue' | 'structValue' | 'listValue';
}

export interface ListValue {
  values?: Value[];
}

export interface Struct {
  fields?: Record<string, Value>;
}

// ---- google.rpc -----------------------------------------------------------

export interface Status {
  /** google.rpc.Code; 0 = OK (allow). */
  code?: number;
  message?: string;
  details?: Any[];
}

// ---- envoy.type.v3 ---------------------------------------------------------

/** envoy.type.v3.StatusCode: the numeric value is the HTTP status (0 = Empty). */
export type HttpStatusCode = number;

export interface HttpStatus {
  code?: HttpStatusCode;
}

// ---- envoy.config.core.v3 --------------------------------------------------

export const SocketAddressProtocol = { TCP: 0, UDP: 1 } as const;
export type SocketAddressProtocol = (typeof SocketAddressProtocol)[keyof typeof SocketAddressProtocol];

export interface SocketAddress {
  protocol?: SocketAddressProtocol | number;
  address?: string;
  port_value?: number;
  named_port?: string;
  resolver_name?: string;
  ipv4_compat?: boolean;
  port_specifier?: 'port_value' | 'named_port';
}

export interface Pipe {
  path?: string;
  mode?: number;
}

export interface EnvoyInternalAddress {
  server_listener_name?: string;
  endpoint_id?: string;
  address_name_specifier?: 'server_listener_name';
}

export interface Address {
  socket_address?: SocketAddress;
  pipe?: Pipe;
  envoy_internal_address?: EnvoyInternalAddress;
  address?: 'socket_address' | 'pipe' | 'envoy_internal_address';
}

export interface Metadata {
  filter_metadata?: Record<string, Struct>;
  typed_filter_metadata?: Record<string, Any>;
}

export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer | Uint8Array;
}

export const HeaderAppendAction = {
  APPEND_IF_EXISTS_OR_ADD: 0,
  ADD_IF_ABSENT: 1,
  OVERWRITE_IF_EXISTS_OR_ADD: 2,
  OVERWRITE_IF_EXISTS: 3,
} as const;
export type HeaderAppendAction = (typeof HeaderAppendAction)[keyof typeof HeaderAppendAction];

export interface HeaderValueOption {
  header?: HeaderValue;
  /** Deprecated upstream, but the only flag Envoy <= 1.36 reads: `{ value: false }` = overwrite. */
  append?: BoolValue;
  append_action?: HeaderAppendAction | number;
  keep_empty_value?: boolean;
}

export interface HeaderMap {
  headers?: HeaderValue[];
}

export interface QueryParameter {
  key?: string;
  value?: string;
}

// ---- envoy.service.auth.v3 -------------------------------------------------

export interface Peer {
  address?: Address;
  service?: string;
  labels?: Record<string, string>;
  principal?: string;
  certificate?: string;
}

export interface HttpRequest {
  id?: string;
  method?: string;
  headers?: Record<string, string>;
  header_map?: HeaderMap;
  path?: string;
  host?: string;
  scheme?: string;
  query?: string;
  fragment?: string;
  /** int64; decimal string on decode. */
  size?: string | number;
  protocol?: string;
  body?: string;
  raw_body?: Buffer | Uint8Array;
}

export interface AttributeRequest {
  time?: Timestamp;
  /** Absent for network-level (TCP) checks. */
  http?: HttpRequest;
}

export interface TLSSession {
  sni?: string;
}

export interface AttributeContext {
  source?: Peer;
  destination?: Peer;
  request?: AttributeRequest;
  context_extensions?: Record<string, string>;
  metadata_context?: Metadata;
  route_metadata_context?: Metadata;
  tls_session?: TLSSession;
}

export interface CheckRequest {
  attributes?: AttributeContext;
}

export interface DeniedHttpResponse {
  status?: HttpStatus;
  headers?: HeaderValueOption[];
  body?: string;
}

export interface OkHttpResponse {
  headers?: HeaderValueOption[];
  headers_to_remove?: string[];
  /** Deprecated: use CheckResponse.dynamic_metadata. */
  dynamic_metadata?: Struct;
  response_headers_to_add?: HeaderValueOption[];
  query_parameters_to_set?: QueryParameter[];
  query_parameters_to_remove?: string[];
}

export interface CheckResponse {
  status?: Status;
  denied_response?: DeniedHttpResponse;
  ok_response?: OkHttpResponse;
  /** Newest Envoy only (field 5); older Envoys ignore it as an unknown field. */
  error_response?: DeniedHttpResponse;
  dynamic_metadata?: Struct;
  http_response?: 'denied_response' | 'ok_response' | 'error_response';
}

/** Namespaced aliases mirroring the proto nesting (AttributeContext.Peer etc.). */
export declare namespace AttributeContext {
  export type { Peer, AttributeRequest as Request, HttpRequest, TLSSession };
}
