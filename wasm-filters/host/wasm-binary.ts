// Reads the import and export sections (with function types) of a Wasm binary.
// Node's WebAssembly.Module.imports() has no types, and linking must check them.

export interface FuncImport { module: string; name: string; kind: "function" | "table" | "memory" | "global" | "tag"; sig?: string }
export interface ExportEntry { name: string; kind: "function" | "table" | "memory" | "global" | "tag"; sig?: string }
export interface ModuleShape { imports: FuncImport[]; exports: ExportEntry[] }

const KINDS = ["function", "table", "memory", "global", "tag"] as const;

function valType(b: number): string {
  switch (b) {
    case 0x7f: return "i";
    case 0x7e: return "I";
    case 0x7d: return "f";
    case 0x7c: return "F";
    case 0x7b: return "v";
    case 0x70: return "r";
    case 0x6f: return "e";
    default: throw new Error(`unsupported value type 0x${b.toString(16)}`);
  }
}

export function readModuleShape(bytes: Uint8Array): ModuleShape {
  let p = 0;
  const u8 = (): number => {
    if (p >= bytes.length) throw new Error("truncated Wasm binary");
    return bytes[p++]!;
  };
  const uleb = (): number => {
    let r = 0, shift = 0, b: number;
    do { b = u8(); r += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return r;
  };
  const name = (): string => {
    const n = uleb();
    const s = Buffer.from(bytes.buffer, bytes.byteOffset + p, n).toString("utf8");
    p += n;
    return s;
  };
  const limits = (): void => { const f = u8(); uleb(); if (f & 1) uleb(); };
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new Error("not a WebAssembly binary (missing \\0asm magic)");
  }
  p = 8;
  const types: string[] = [];
  const imports: FuncImport[] = [];
  const funcTypes: number[] = []; // type index per function index (imports first)
  const rawExports: { name: string; kind: number; index: number }[] = [];
  while (p < bytes.length) {
    const id = u8();
    const size = uleb();
    const end = p + size;
    if (id === 1) {
      const n = uleb();
      for (let t = 0; t < n; t++) {
        const form = u8();
        if (form !== 0x60) throw new Error(`unsupported type form 0x${form.toString(16)}`);
        const np = uleb(); let params = "";
        for (let k = 0; k < np; k++) params += valType(u8());
        const nr = uleb(); let results = "";
        for (let k = 0; k < nr; k++) results += valType(u8());
        types.push(`${params}:${results}`);
      }
    } else if (id === 2) {
      const n = uleb();
      for (let k = 0; k < n; k++) {
        const module = name();
        const field = name();
        const kind = u8();
        if (kind === 0) {
          const t = uleb();
          funcTypes.push(t);
          imports.push({ module, name: field, kind: "function", sig: types[t] });
        } else if (kind === 1) { u8(); limits(); imports.push({ module, name: field, kind: "table" }); }
        else if (kind === 2) { limits(); imports.push({ module, name: field, kind: "memory" }); }
        else if (kind === 3) { u8(); u8(); imports.push({ module, name: field, kind: "global" }); }
        else if (kind === 4) { u8(); uleb(); imports.push({ module, name: field, kind: "tag" }); }
        else throw new Error(`unknown import kind ${kind}`);
      }
    } else if (id === 3) {
      const n = uleb();
      for (let k = 0; k < n; k++) funcTypes.push(uleb());
    } else if (id === 7) {
      const n = uleb();
      for (let k = 0; k < n; k++) {
        const nm = name();
        const kind = u8();
        rawExports.push({ name: nm, kind, index: uleb() });
      }
    }
    p = end;
  }
  const exports = rawExports.map((e): ExportEntry => {
    const kind = KINDS[e.kind] ?? "function";
    if (kind !== "function") return { name: e.name, kind };
    const t = funcTypes[e.index];
    return { name: e.name, kind, sig: t === undefined ? undefined : types[t] };
  });
  return { imports, exports };
}
