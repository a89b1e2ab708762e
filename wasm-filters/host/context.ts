// Per-context state (Envoy's proxy-wasm Context): the root context has no stream.
import type { HeaderMap } from "./headers.js";
import type { BufferTypeCode } from "./abi.js";
import type { LocalReply, LogEntry, PropertyValue } from "./types.js";

export const EMPTY = Buffer.alloc(0);
const NO_PROPS: ReadonlyMap<string, PropertyValue> = new Map();

export class Ctx {
  reqHeaders: HeaderMap | null = null;
  respHeaders: HeaderMap | null = null;
  /** A header map is writable only inside its own callback. */
  reqMapOpen = false;
  respMapOpen = false;
  /** In on_log: request/response maps are readable again, not writable. */
  logPhase = false;
  reqBody: Buffer | null = null;
  respBody: Buffer | null = null;
  /** The body buffer whose callback is running (-1: none). */
  openBuffer: BufferTypeCode | -1 = -1;
  localReply: LocalReply | null = null;
  continued = false;
  closed = false;
  filterState = new Map<string, Buffer>();
  logs: LogEntry[] = [];
  callbacks: string[] = [];
  /** Stream properties, flattened once per stream and shared by its filters (read only). */
  props: ReadonlyMap<string, PropertyValue> = NO_PROPS;
  constructor(readonly id: number, readonly isRoot: boolean) {}
}

export function toBuf(v: string | Uint8Array | undefined): Buffer {
  if (v === undefined) return EMPTY;
  return typeof v === "string" ? Buffer.from(v, "utf8") : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}
