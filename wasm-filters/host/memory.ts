// Access to the module's linear memory: bounds-checked reads and writes, and Envoy's
// copy-out (malloc in the guest, copy, write the pointer and length back).
import { Status, type StatusCode } from "./abi.js";

const EMPTY = Buffer.alloc(0);

type Malloc = (size: number) => number | undefined;

export class GuestMemory {
  private buf: ArrayBuffer | null = null;
  private view: Buffer = EMPTY;

  constructor(private readonly memory: WebAssembly.Memory, private readonly malloc: Malloc | undefined) {}

  /** Current size in bytes. */
  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /** A Buffer over the whole memory; rebuilt only when memory.grow replaced the ArrayBuffer. */
  bytes(): Buffer {
    const b = this.memory.buffer;
    if (b !== this.buf) { this.buf = b; this.view = Buffer.from(b); }
    return this.view;
  }

  inBounds(ptr: number, len: number): boolean {
    return ptr >= 0 && len >= 0 && ptr + len <= this.memory.buffer.byteLength;
  }

  /** A view (not a copy) of guest bytes; null when out of bounds. Pointers are u32. */
  slice(ptr: number, len: number): Buffer | null {
    ptr >>>= 0; len >>>= 0;
    if (!this.inBounds(ptr, len)) return null;
    return this.bytes().subarray(ptr, ptr + len);
  }

  /** Guest bytes as a byte string (latin1, one char per byte). */
  str(ptr: number, len: number): string | null {
    const b = this.slice(ptr, len);
    return b === null ? null : b.toString("latin1", 0, b.length);
  }

  setU32(ptr: number, v: number): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 4)) return false;
    this.bytes().writeUInt32LE(v >>> 0, ptr);
    return true;
  }

  setU64(ptr: number, v: bigint): boolean {
    ptr >>>= 0;
    if (!this.inBounds(ptr, 8)) return false;
    this.bytes().writeBigUInt64LE(BigInt.asUintN(64, v), ptr);
    return true;
  }

  readU32(ptr: number): number {
    return this.bytes().readUInt32LE(ptr);
  }

  /** Envoy's copyToPointerSize: malloc in the module, copy, write ptr and len (0,0 when empty). */
  copyOut(size: number, fill: ((mem: Buffer, at: number) => void) | null, pp: number, lp: number): StatusCode {
    let ptr = 0;
    if (size > 0) {
      ptr = (this.malloc!(size) ?? 0) >>> 0;
      if (ptr === 0 || !this.inBounds(ptr, size)) return Status.INVALID_MEMORY_ACCESS;
      fill?.(this.bytes(), ptr);
    }
    if (!this.setU32(pp, ptr) || !this.setU32(lp, size)) return Status.INVALID_MEMORY_ACCESS;
    return Status.OK;
  }

  copyBytesOut(b: Uint8Array, pp: number, lp: number): StatusCode {
    return this.copyOut(b.length, (m, at) => m.set(b, at), pp, lp);
  }
}
