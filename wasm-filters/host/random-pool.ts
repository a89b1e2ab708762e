// Randomness for WASI random_get. randomFillSync costs about as much for 24 bytes as for
// 4 KiB, so small draws come from a pool; used bytes are zeroed, not kept around.
import { randomFillSync } from "node:crypto";

export class RandomPool {
  private pool = Buffer.alloc(0);
  private at = 0;

  fill(out: Buffer): void {
    if (out.length > 1024) { randomFillSync(out); return; }
    if (this.at + out.length > this.pool.length) {
      if (this.pool.length === 0) this.pool = Buffer.alloc(4096);
      randomFillSync(this.pool);
      this.at = 0;
    }
    this.pool.copy(out, 0, this.at, this.at + out.length);
    this.pool.fill(0, this.at, this.at + out.length);
    this.at += out.length;
  }
}
