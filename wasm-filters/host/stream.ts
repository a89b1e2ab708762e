// HTTP stream state and filter-chain driving: Envoy's per-stream Context as an HTTP
// filter (lazy context creation, failure policy), and the order in which Envoy calls the
// filters of a chain for one request and its response.
import { Action, BufferType } from "./abi.js";
import { EMPTY, toBuf, type Ctx } from "./context.js";
import { HeaderMap } from "./headers.js";
import type { HeaderList } from "./pairs.js";
import { flatten } from "./properties.js";
import type {
  ChainResult, FailStrategy, FilterRun, LocalReply, PropertyValue, RequestInput, UpstreamRequest, UpstreamResponse,
} from "./types.js";

/** What a stream needs from a loaded plugin (Plugin implements it). */
export interface StreamHost {
  readonly failed: boolean;
  readonly failStrategy: FailStrategy;
  readonly rootContextId: number;
  newContext(): Ctx;
  dropContext(c: Ctx): void;
  /** Calls a module export in `ctx`; undefined when absent or the VM failed. */
  call(ctx: Ctx, name: string, ...args: number[]): number | undefined;
  has(name: string): boolean;
}

/** One filter's share of an HTTP stream: Envoy's Context as an HTTP filter. */
class FilterStream {
  ctx: Ctx | null = null;
  failReplied = false; // Envoy's failure_local_reply_sent_
  bypassed = false;
  paused = false;

  constructor(readonly plugin: StreamHost, private readonly props: ReadonlyMap<string, PropertyValue>) {}

  /** Envoy creates the VM context lazily, on the first callback (or in log()). */
  private created(): Ctx | null {
    if (this.ctx) return this.ctx;
    if (this.plugin.failed) return null;
    const c = this.plugin.newContext();
    c.props = this.props;
    this.ctx = c;
    this.plugin.call(c, "proxy_on_context_create", c.id, this.plugin.rootContextId);
    return c;
  }

  /** After a failure: FAIL_CLOSE answers 503 wasm_fail_stream once; FAIL_OPEN lets the stream go on. */
  private onFailure(): LocalReply | null {
    if (this.plugin.failStrategy === "FAIL_OPEN") { this.bypassed = true; return null; }
    if (this.failReplied) return null;
    this.failReplied = true;
    return failReply();
  }

  decode(headers: HeaderMap, body: { b: Buffer }): LocalReply | "continue" | "paused" {
    const c = this.created(); // null once the VM failed; creating it may fail it too
    if (!c || this.plugin.failed) return this.onFailure() ?? "continue";
    const eos = body.b.length === 0;
    c.reqHeaders = headers;
    c.reqBody = body.b;
    c.reqMapOpen = true;
    const r = this.plugin.call(c, "proxy_on_request_headers", c.id, headers.size, eos ? 1 : 0);
    c.reqMapOpen = false;
    if (this.plugin.failed) return this.onFailure() ?? "continue";
    if (c.localReply) return c.localReply;
    if (r === Action.PAUSE && !c.continued) { this.paused = true; return "paused"; }
    if (!eos && this.plugin.has("proxy_on_request_body")) {
      c.openBuffer = BufferType.REQUEST_BODY;
      c.continued = false;
      const rb = this.plugin.call(c, "proxy_on_request_body", c.id, body.b.length, 1);
      c.openBuffer = -1;
      body.b = c.reqBody ?? EMPTY;
      if (this.plugin.failed) return this.onFailure() ?? "continue";
      if (c.localReply) return c.localReply;
      if (rb === Action.PAUSE && !c.continued) { this.paused = true; return "paused"; }
    }
    return "continue";
  }

  /** Response path; returns a local reply that replaces the response, if any. */
  encode(headers: HeaderMap, body: { b: Buffer }, replying: LocalReply | null): LocalReply | null {
    const c = this.ctx;
    // Envoy skips the VM when no context was created or its failure reply was sent.
    if (!c || this.failReplied || this.bypassed) return null;
    if (this.plugin.failed) return this.onFailure();
    c.respHeaders = headers;
    c.respBody = body.b;
    c.respMapOpen = true;
    const eos = body.b.length === 0;
    const before = c.localReply;
    this.plugin.call(c, "proxy_on_response_headers", c.id, headers.size, eos ? 1 : 0);
    c.respMapOpen = false;
    if (this.plugin.failed) return this.onFailure();
    if (!eos && this.plugin.has("proxy_on_response_body")) {
      c.openBuffer = BufferType.RESPONSE_BODY;
      this.plugin.call(c, "proxy_on_response_body", c.id, body.b.length, 1);
      c.openBuffer = -1;
      body.b = c.respBody ?? EMPTY;
      if (this.plugin.failed) return this.onFailure();
    }
    // A local reply sent from the response path replaces the response (not the one being sent).
    if (c.localReply && c.localReply !== before && c.localReply !== replying) return c.localReply;
    return null;
  }

  /** Access log then teardown: on_log (creating the context if needed, as Envoy's log() does), on_done, on_delete. */
  finish(): void {
    if (this.plugin.failed) { if (this.ctx) this.plugin.dropContext(this.ctx); return; }
    const c = this.created();
    if (!c || this.plugin.failed) return;
    c.logPhase = true;
    this.plugin.call(c, "proxy_on_log", c.id);
    c.logPhase = false;
    this.plugin.call(c, "proxy_on_done", c.id);
    this.plugin.call(c, "proxy_on_delete", c.id);
    this.plugin.dropContext(c);
  }
}

/**
 * Drives a stream through filters in Envoy's order: request callbacks first to last,
 * response callbacks last to first (from the filter that replied, for a local reply), then
 * on_log/on_done/on_delete. Yields the upstream request and receives the response.
 */
function* drive(plugins: readonly StreamHost[], input: RequestInput): Generator<UpstreamRequest, ChainResult, UpstreamResponse> {
  const props = new Map<string, PropertyValue>();
  flatten(input.properties, props);
  const streams = plugins.map((p) => new FilterStream(p, props));
  const req = HeaderMap.from(input.requestHeaders); // Envoy's codec: add() per header
  const body = { b: toBuf(input.requestBody) };
  let reply: LocalReply | null = null;
  let from = streams.length - 1;
  let paused = false;
  for (let i = 0; i < streams.length; i++) {
    const o = streams[i]!.decode(req, body);
    if (o === "paused") { paused = true; from = i; break; }
    if (o !== "continue") { reply = o; from = i; break; }
  }
  let forwarded: HeaderList | null = null;
  let status = 0;
  let respHeaders: HeaderList = [];
  let respBody: Buffer = EMPTY;
  if (!paused) {
    let map: HeaderMap;
    const rb: { b: Buffer } = { b: EMPTY };
    if (reply) map = localReplyResponse(reply, rb);
    else {
      // One copy: what the upstream received is what the result reports as forwarded (the
      // map itself stays with the filters, which may read it again in on_log).
      forwarded = req.toList();
      const r = yield { headers: forwarded, body: body.b };
      map = new HeaderMap();
      const headers = r.headers ?? [];
      if (!headers.some(([k]) => k === ":status")) map.add(":status", String(r.status ?? 200));
      for (const [k, v] of headers) map.add(k, v);
      rb.b = toBuf(r.body);
    }
    for (let i = from; i >= 0; i--) {
      const replaced = streams[i]!.encode(map, rb, reply);
      if (replaced) {
        // The replacement goes through the remaining (earlier) filters.
        reply = replaced;
        map = localReplyResponse(replaced, rb);
      }
    }
    // No copy: after the response callbacks nothing writes this map (on_log only reads it).
    respHeaders = map.entries;
    respBody = rb.b;
    const st = map.get(":status");
    status = st === undefined ? 0 : Number(st);
  }
  for (const s of streams) s.finish();
  const filterState: Record<string, string> = {};
  for (const s of streams) for (const [k, v] of s.ctx?.filterState ?? []) filterState[k] = v.toString("utf8");
  const filters: FilterRun[] = streams.map((s) => ({
    contextId: s.ctx?.id ?? 0, callbacks: s.ctx?.callbacks ?? [], logs: s.ctx?.logs ?? [], bypassed: s.bypassed,
  }));
  return {
    contextId: filters[0]?.contextId ?? 0,
    requestHeaders: forwarded,
    requestBody: forwarded ? body.b : null,
    localReply: reply,
    status,
    responseHeaders: respHeaders,
    responseBody: respBody,
    filterState,
    logs: filters[0]?.logs ?? [],
    callbacks: filters[0]?.callbacks ?? [],
    vmFailed: plugins.some((p) => p.failed),
    bypassed: streams.some((s) => s.bypassed),
    paused,
    filters,
  };
}

function defaultUpstream(input: RequestInput): UpstreamResponse {
  return { headers: input.responseHeaders, body: input.responseBody };
}

/** Runs one stream through a chain of filters (Envoy's filter order); `upstream` may be async. */
export async function runFilterChain(plugins: readonly StreamHost[], input: RequestInput): Promise<ChainResult> {
  const g = drive(plugins, input);
  let step = g.next();
  while (!step.done) step = g.next(input.upstream ? await input.upstream(step.value) : defaultUpstream(input));
  return step.value;
}

/** Synchronous runFilterChain (no async upstream). */
export function runFilterChainSync(plugins: readonly StreamHost[], input: RequestInput): ChainResult {
  const g = drive(plugins, input);
  let step = g.next();
  while (!step.done) {
    const r = input.upstream ? input.upstream(step.value) : defaultUpstream(input);
    if (r instanceof Promise) throw new TypeError("got a Promise from upstream(); use the async runRequest/runFilterChain for an async upstream");
    step = g.next(r);
  }
  return step.value;
}

function failReply(): LocalReply {
  // Envoy's failStream: 503, gRPC UNAVAILABLE, details wasm_fail_stream, empty body.
  return { status: 503, body: EMPTY, headers: [], details: "wasm_fail_stream", grpcStatus: 14 };
}

/** The response Envoy builds for a local reply before the encoder filters see it (body into `rb`). */
function localReplyResponse(r: LocalReply, rb: { b: Buffer }): HeaderMap {
  const map = new HeaderMap();
  map.add(":status", String(r.status));
  if (r.body.length > 0) {
    map.add("content-length", String(r.body.length));
    map.add("content-type", "text/plain");
  }
  for (const [k, v] of r.headers) map.add(k, v);
  rb.b = r.body;
  return map;
}
