/**
 * The CheckRequest decoder of the hot path: protobufjs decodes the bytes (the same generated-at-run-time
 * decoder proto-loader uses), and instead of proto-loader's generic `toObject` only the fields
 * `toRequestView` reads are copied out, with `toObject`'s rules (PROTO_LOADER_OPTIONS): a field is there
 * only when the message holds it as its own property (protobufjs keeps unset scalars on the prototype),
 * maps only when not empty, int64 as a decimal string. Everything else in the request (metadata, time,
 * labels of no use...) is never copied. `bench:parts` measured `toObject` as about 40 % of the decode;
 * test/proto/check-decoder.test.ts holds both decoders to the same RequestView over a corpus and fuzzed
 * bytes.
 *
 * A field `toRequestView` starts reading must be copied here too; the test compares whole views, so a
 * field read but not copied fails it.
 */
import protobuf from 'protobufjs';
import { join } from 'node:path';
import { PROTO_FILES, PROTO_ROOT } from './load.js';
import type { Address, AttributeContext, CheckRequest, HeaderMap, HeaderValue, HttpRequest, Peer } from './types.js';

type Message = Record<string, unknown>;

const has = (m: Message, key: string): boolean => Object.prototype.hasOwnProperty.call(m, key);

/** A field the message holds as its own property (toObject's `defaults: false`), else undefined. */
function own<T>(m: Message, key: string): T | undefined {
  return has(m, key) && m[key] != null ? (m[key] as T) : undefined;
}

const str = (m: Message, key: string): string | undefined => own<string>(m, key);
const sub = (m: Message, key: string): Message | undefined => own<Message>(m, key);

function map(m: Message, key: string): Record<string, string> | undefined {
  const v = m[key] as Record<string, string> | undefined;
  // protobufjs decodes a map into a fresh plain object (an empty one is a shared frozen default).
  return v != null && Object.keys(v).length > 0 ? v : undefined;
}

function address(m: Message | undefined): Address | undefined {
  const socket = m === undefined ? undefined : sub(m, 'socket_address');
  if (socket === undefined) return m === undefined ? undefined : {};
  const out: Address['socket_address'] = {};
  const a = str(socket, 'address');
  if (a !== undefined) out.address = a;
  const port = own<number>(socket, 'port_value');
  if (port !== undefined) out.port_value = port;
  return { socket_address: out };
}

function peer(m: Message | undefined): Peer | undefined {
  if (m === undefined) return undefined;
  const out: Peer = {};
  const a = address(sub(m, 'address'));
  if (a !== undefined) out.address = a;
  const service = str(m, 'service');
  if (service !== undefined) out.service = service;
  const labels = map(m, 'labels');
  if (labels !== undefined) out.labels = labels;
  const principal = str(m, 'principal');
  if (principal !== undefined) out.principal = principal;
  const certificate = str(m, 'certificate');
  if (certificate !== undefined) out.certificate = certificate;
  return out;
}

function headerMap(m: Message | undefined): HeaderMap | undefined {
  if (m === undefined) return undefined;
  const list = m['headers'] as Message[] | undefined;
  if (list == null || list.length === 0) return {};
  const headers: HeaderValue[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const h = list[i]!;
    const out: HeaderValue = {};
    const key = str(h, 'key');
    if (key !== undefined) out.key = key;
    const value = str(h, 'value');
    if (value !== undefined) out.value = value;
    const raw = own<Uint8Array>(h, 'raw_value');
    if (raw !== undefined) out.raw_value = raw;
    headers[i] = out;
  }
  return { headers };
}

const STRING_FIELDS = ['id', 'method', 'path', 'host', 'scheme', 'query', 'fragment', 'protocol', 'body'] as const;

function http(m: Message | undefined): HttpRequest | undefined {
  if (m === undefined) return undefined;
  const out: HttpRequest = {};
  for (const key of STRING_FIELDS) {
    const v = str(m, key);
    if (v !== undefined) out[key] = v;
  }
  const headers = map(m, 'headers');
  if (headers !== undefined) out.headers = headers;
  const hm = headerMap(sub(m, 'header_map'));
  if (hm !== undefined) out.header_map = hm;
  const size = own<unknown>(m, 'size');
  if (size !== undefined) out.size = String(size); // a Long or a number: toObject's `longs: String`
  const rawBody = own<Uint8Array>(m, 'raw_body');
  if (rawBody !== undefined) out.raw_body = rawBody;
  return out;
}

function attributes(m: Message): AttributeContext {
  const out: AttributeContext = {};
  const source = peer(sub(m, 'source'));
  if (source !== undefined) out.source = source;
  const destination = peer(sub(m, 'destination'));
  if (destination !== undefined) out.destination = destination;
  const request = sub(m, 'request');
  if (request !== undefined) {
    const h = http(sub(request, 'http'));
    out.request = h === undefined ? {} : { http: h };
  }
  const ext = map(m, 'context_extensions');
  if (ext !== undefined) out.context_extensions = ext;
  const tls = sub(m, 'tls_session');
  if (tls !== undefined) {
    const sni = str(tls, 'sni');
    out.tls_session = sni === undefined ? {} : { sni };
  }
  return out;
}

export type CheckRequestDecoder = (bytes: Uint8Array) => CheckRequest;

/**
 * Loads the protos with protobufjs (keepCase, as proto-loader loads them) and returns the decoder. A
 * malformed message throws from protobufjs exactly as with proto-loader's deserializer, and the transport
 * answers that call as it did before.
 */
export function createCheckRequestDecoder(): CheckRequestDecoder {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(PROTO_ROOT, target));
  // The well-known google/protobuf types are built into protobufjs; only ours are read from PROTO_ROOT.
  const loaded = root.loadSync(
    PROTO_FILES.map((f) => join(PROTO_ROOT, f)),
    { keepCase: true },
  );
  loaded.resolveAll();
  const type = loaded.lookupType('envoy.service.auth.v3.CheckRequest');
  return (bytes) => {
    const msg = type.decode(bytes) as unknown as Message;
    const attrs = sub(msg, 'attributes');
    return attrs === undefined ? {} : { attributes: attributes(attrs) };
  };
}
