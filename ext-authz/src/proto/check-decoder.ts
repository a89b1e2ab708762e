/**
 * The CheckRequest decoder of the hot path. It walks the wire bytes itself and builds only the fields
 * `toRequestView` reads; the other declared fields (metadata, the request time, SocketAddress' protocol...)
 * are stepped over by their declared type without being decoded, unknown fields by their wire type. The wire primitives are protobufjs' own Reader (varints,
 * int64, bytes, skipping), so lengths, limits and malformed bytes are read exactly as proto-loader's
 * decoder reads them; what is ours is the walk, written after protobufjs' generated decoders: a declared
 * field (read or not) is consumed as its declared type whatever wire type it carries, a repeated message field replaces
 * the earlier one, a map entry without a key or value has '' for it, a string whose length runs past its
 * message ends at the message's end (BufferReader#string), and a nested message must end exactly at its
 * length.
 *
 * What it does differently, on purpose:
 * - maps (headers, labels, context extensions) are objects without a prototype, so a header named
 *   `constructor` or `__proto__` is an own property like any other, and a lookup of a name the request
 *   does not carry finds nothing;
 * - strings a request repeats call after call come from `StringTable`s: the same string object for the
 *   same bytes, no fresh copy to collect;
 * - fields the view does not read are never converted, so bytes whose only fault lies in one of them
 *   (a metadata Struct protobufjs' toObject cannot convert) are answered.
 *
 * Why not protobufjs' generated decoder and a copy of the fields we read (the decoder before this one):
 * the generic decoder builds every message as an object on a prototype, every header twice (a map entry,
 * then the copy), and decoded about 20 % of a full-chain Check's CPU; this walk does a fraction of that
 * work. test/proto/check-decoder.test.ts holds it to proto-loader's view over built, hand-written and
 * generated requests, and to a protobufjs decoder of the same fields over mutated and cut bytes.
 */
import protobuf from 'protobufjs';
import { StringTable } from './string-table.js';
import type { Address, AttributeContext, CheckRequest, HeaderMap, HeaderValue, HttpRequest, Peer } from './types.js';

type Reader = protobuf.Reader;
type Dict = Record<string, string>;

/** Header names and short values: 4,096 slots of up to 64 bytes (≤ 768 KiB). */
const SHORT = new StringTable(4096, 64);
/** XFCC headers, URL-encoded certificates, long cookies: 128 slots of up to 8 KiB (≤ 3 MiB). */
const LONG = new StringTable(128, 8192);

/** Bytes the decoder's string tables can hold at most (string-table.ts). */
export const STRING_TABLE_BOUND_BYTES = SHORT.boundBytes + LONG.boundBytes;

function indexOutOfRange(r: Reader): RangeError {
  return new RangeError(`index out of range: ${r.pos} > ${r.len}`);
}

/** A length-delimited string, as BufferReader#string reads it; `intern` picks the string tables. */
function text(r: Reader, intern: boolean): string {
  const length = r.uint32();
  const start = r.pos;
  const end = Math.min(start + length, r.len);
  r.pos = end;
  const buf = r.buf as Buffer;
  if (!intern) return buf.toString('utf8', start, end);
  return end - start <= 64 ? SHORT.decode(buf, start, end) : LONG.decode(buf, start, end);
}

/** Enters a nested message: returns the enclosing limit, the nested one becomes `r.len`. */
function enter(r: Reader): number {
  const length = r.uint32();
  const end = r.pos + length;
  if (end > r.len) throw indexOutOfRange(r);
  const outer = r.len;
  r.len = end;
  return outer;
}

function leave(r: Reader, end: number, outer: number): void {
  if (r.pos !== end) throw indexOutOfRange(r);
  r.len = outer;
}

/*
 * Declared fields the view never reads are consumed by their declared type, whatever wire type they
 * arrive with, as protobufjs' decoder consumes them; skipping them by the wire type on the wire would
 * frame the bytes after them differently from proto-loader (a varint-typed `fragment` followed by bytes
 * that read as a header only to one of the two).
 */

/** An unread string: its length, then at most to the message's end (BufferReader#string). */
function skipString(r: Reader): void {
  const length = r.uint32();
  r.pos = Math.min(r.pos + length, r.len);
}

/** An unread message: it must end inside its parent; its contents are not decoded. */
function skipMessage(r: Reader): void {
  const outer = enter(r);
  const end = r.len;
  r.pos = end;
  leave(r, end, outer);
}

/** One map<string, string> entry into `into` (created on the first entry). */
function mapEntry(r: Reader, into: Dict | undefined, depth: number): Dict {
  const outer = enter(r);
  const end = r.len;
  let key = '';
  let value = '';
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        key = text(r, true);
        break;
      case 2:
        value = text(r, true);
        break;
      default:
        r.skipType(tag & 7, depth);
    }
  }
  // protobufjs checks the entry's end before it restores the limit.
  if (r.pos !== end) throw indexOutOfRange(r);
  r.len = outer;
  const map = into ?? (Object.create(null) as Dict);
  map[key] = value;
  return map;
}

function socketAddress(r: Reader, depth: number): NonNullable<Address['socket_address']> {
  const outer = enter(r);
  const end = r.len;
  const out: NonNullable<Address['socket_address']> = {};
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 2:
        out.address = text(r, true);
        break;
      case 3:
        out.port_value = r.uint32();
        break;
      case 1: // protocol (enum)
      case 6: // ipv4_compat (bool)
        r.uint32();
        break;
      case 4: // named_port
      case 5: // resolver_name
        skipString(r);
        break;
      default:
        r.skipType(tag & 7, depth);
    }
  }
  leave(r, end, outer);
  return out;
}

function address(r: Reader, depth: number): Address {
  const outer = enter(r);
  const end = r.len;
  let socket: Address['socket_address'];
  while (r.pos < end) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === 1) socket = socketAddress(r, depth + 1);
    else if (field === 2 || field === 3) skipMessage(r); // pipe, envoy_internal_address
    else r.skipType(tag & 7, depth);
  }
  leave(r, end, outer);
  return socket === undefined ? {} : { socket_address: socket };
}

function peer(r: Reader, depth: number): Peer {
  const outer = enter(r);
  const end = r.len;
  const out: Peer = {};
  let labels: Dict | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        out.address = address(r, depth + 1);
        break;
      case 2:
        out.service = text(r, true);
        break;
      case 3:
        labels = mapEntry(r, labels, depth);
        break;
      case 4:
        out.principal = text(r, true);
        break;
      case 5:
        out.certificate = text(r, true);
        break;
      default:
        r.skipType(tag & 7, depth);
    }
  }
  leave(r, end, outer);
  if (labels !== undefined) out.labels = labels;
  return out;
}

function headerValue(r: Reader, depth: number): HeaderValue {
  const outer = enter(r);
  const end = r.len;
  const out: HeaderValue = {};
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        out.key = text(r, true);
        break;
      case 2:
        out.value = text(r, true);
        break;
      case 3:
        out.raw_value = r.bytes();
        break;
      default:
        r.skipType(tag & 7, depth);
    }
  }
  leave(r, end, outer);
  return out;
}

function headerMap(r: Reader, depth: number): HeaderMap {
  const outer = enter(r);
  const end = r.len;
  let headers: HeaderValue[] | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) (headers ??= []).push(headerValue(r, depth + 1));
    else r.skipType(tag & 7, depth);
  }
  leave(r, end, outer);
  return headers === undefined ? {} : { headers };
}

function httpRequest(r: Reader, depth: number): HttpRequest {
  const outer = enter(r);
  const end = r.len;
  const out: HttpRequest = {};
  let headers: Dict | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        out.id = text(r, false); // unique per request: no use keeping it
        break;
      case 2:
        out.method = text(r, true);
        break;
      case 3:
        headers = mapEntry(r, headers, depth);
        break;
      case 4:
        out.path = text(r, true);
        break;
      case 5:
        out.host = text(r, true);
        break;
      case 6:
        out.scheme = text(r, true);
        break;
      case 7:
        out.query = text(r, true);
        break;
      case 8: // fragment (Envoy never sends one)
        skipString(r);
        break;
      case 9:
        out.size = String(r.int64()); // a Long or a number: toObject's `longs: String`
        break;
      case 10:
        out.protocol = text(r, true);
        break;
      case 11:
        out.body = text(r, false);
        break;
      case 12:
        out.raw_body = r.bytes();
        break;
      case 13:
        out.header_map = headerMap(r, depth + 1);
        break;
      default:
        r.skipType(tag & 7, depth);
    }
  }
  leave(r, end, outer);
  if (headers !== undefined) out.headers = headers;
  return out;
}

function request(r: Reader, depth: number): NonNullable<AttributeContext['request']> {
  const outer = enter(r);
  const end = r.len;
  let http: HttpRequest | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === 2) http = httpRequest(r, depth + 1);
    else if (field === 1) skipMessage(r); // time
    else r.skipType(tag & 7, depth);
  }
  leave(r, end, outer);
  return http === undefined ? {} : { http };
}

function tlsSession(r: Reader, depth: number): NonNullable<AttributeContext['tls_session']> {
  const outer = enter(r);
  const end = r.len;
  let sni: string | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) sni = text(r, true);
    else r.skipType(tag & 7, depth);
  }
  leave(r, end, outer);
  return sni === undefined ? {} : { sni };
}

function attributeContext(r: Reader, depth: number): AttributeContext {
  const outer = enter(r);
  const end = r.len;
  const out: AttributeContext = {};
  let extensions: Dict | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        out.source = peer(r, depth + 1);
        break;
      case 2:
        out.destination = peer(r, depth + 1);
        break;
      case 4:
        out.request = request(r, depth + 1);
        break;
      case 10:
        extensions = mapEntry(r, extensions, depth);
        break;
      case 12:
        out.tls_session = tlsSession(r, depth + 1);
        break;
      case 11: // metadata_context
      case 13: // route_metadata_context
        skipMessage(r);
        break;
      default:
        r.skipType(tag & 7, depth);
    }
  }
  leave(r, end, outer);
  if (extensions !== undefined) out.context_extensions = extensions;
  return out;
}

export type CheckRequestDecoder = (bytes: Uint8Array) => CheckRequest;

/**
 * The decoder. Malformed bytes throw (a RangeError or protobufjs' own error), as proto-loader's
 * deserializer does, and the transport answers that call as it did before.
 */
export function createCheckRequestDecoder(): CheckRequestDecoder {
  return (bytes) => {
    const r = protobuf.Reader.create(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const end = r.len;
    let attributes: AttributeContext | undefined;
    while (r.pos < end) {
      const tag = r.uint32();
      if (tag >>> 3 === 1) attributes = attributeContext(r, 1);
      else r.skipType(tag & 7, 0);
    }
    return attributes === undefined ? {} : { attributes };
  };
}
