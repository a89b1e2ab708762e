// Properties (proxy_get_property): flattening the caller's input, Envoy's value encoding,
// and the lookup order (plugin identity, stream properties, request/response attributes
// derived from the live headers, filter state, then VM-wide properties).
import type { Ctx } from "./context.js";
import { pairsSize, writePairs } from "./pairs.js";
import type { Properties, PropertyValue } from "./types.js";

export function flatten(p: Properties | undefined, into: Map<string, PropertyValue>, prefix = ""): void {
  if (!p) return;
  for (const [k, v] of Object.entries(p)) {
    if (v === undefined || v === null) continue;
    const key = prefix + k;
    if (typeof v === "object" && !(v instanceof Uint8Array) && !Array.isArray(v)) flatten(v as Properties, into, key + ".");
    else into.set(key, v as PropertyValue);
  }
}

/** Serializes a property the way Envoy does: ints 8-byte LE, bools 1 byte, maps as pairs. */
export function encodeProperty(v: PropertyValue): Buffer {
  if (typeof v === "string") return Buffer.from(v, "utf8");
  if (typeof v === "boolean") return Buffer.from([v ? 1 : 0]);
  if (typeof v === "bigint") { const b = Buffer.alloc(8); b.writeBigInt64LE(v); return b; }
  if (typeof v === "number") {
    const b = Buffer.alloc(8);
    if (Number.isInteger(v)) b.writeBigInt64LE(BigInt(v)); else b.writeDoubleLE(v);
    return b;
  }
  if (Array.isArray(v)) { const b = Buffer.alloc(pairsSize(v)); writePairs(v, b); return b; }
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** plugin_name, plugin_root_id, plugin_vm_id as configured. */
export interface PluginIdentity { pluginName?: string; rootId?: string; vmId?: string }

export function lookupProperty(
  ctx: Ctx, path: string[], id: PluginIdentity, vmProps: ReadonlyMap<string, PropertyValue>,
): PropertyValue | undefined {
  const dotted = path.join(".");
  const head = path[0];
  if (dotted === "plugin_name") return id.pluginName ?? "passgate";
  if (dotted === "plugin_root_id") return id.rootId ?? "";
  if (dotted === "plugin_vm_id") return id.vmId ?? "";
  if (!ctx.isRoot) {
    const own = ctx.props.get(dotted);
    if (own !== undefined) return own;
    const rq = ctx.reqHeaders;
    if (head === "request" && rq && path.length >= 2) {
      const p = rq.get(":path");
      switch (path[1]) {
        case "path": return p;
        case "url_path": return p === undefined ? undefined : p.split("?")[0];
        case "query": return p === undefined || !p.includes("?") ? undefined : p.slice(p.indexOf("?") + 1);
        case "host": return rq.get(":authority");
        case "method": return rq.get(":method");
        case "scheme": return rq.get(":scheme");
        case "id": return rq.get("x-request-id");
        case "referer": return rq.get("referer");
        case "useragent": return rq.get("user-agent");
        case "headers":
          if (path.length === 2) return rq.toList();
          if (path.length === 3) { const all = rq.getAll(path[2]!); return all.length ? all.join(",") : undefined; }
      }
    }
    const rs = ctx.respHeaders;
    if (head === "response" && rs && path.length >= 2) {
      if (path[1] === "code") { const s = Number(rs.get(":status")); return Number.isFinite(s) ? s : undefined; }
      if (path[1] === "code_details" && ctx.localReply) return ctx.localReply.details;
      if (path[1] === "headers" && path.length === 2) return rs.toList();
      if (path[1] === "headers" && path.length === 3) { const all = rs.getAll(path[2]!); return all.length ? all.join(",") : undefined; }
    }
    const fs = ctx.filterState.get(`wasm.${path.join("\0")}`);
    if (fs) return fs;
  }
  return vmProps.get(dotted);
}
