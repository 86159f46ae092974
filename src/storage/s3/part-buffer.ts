// The bytes of one multipart part being gathered from a stream of small chunks: one buffer that
// grows (doubling, from 64 KiB) up to the part size and is reused for the next part, so an
// upload holds at most one part in memory however its chunks arrive.

const INITIAL = 64 * 1024;

/** Bytes gathered for the next part, at most `capacity`. */
export class PartBuffer {
  private buf = Buffer.alloc(0);
  /** Bytes gathered. */
  length = 0;

  constructor(readonly capacity: number) {}

  /** True when the buffer holds a whole part. */
  get full(): boolean {
    return this.length === this.capacity;
  }

  /** Copies what fits of `chunk`; returns the rest (empty when all of it fitted). */
  fill(chunk: Uint8Array): Uint8Array {
    const n = Math.min(chunk.byteLength, this.capacity - this.length);
    if (this.length + n > this.buf.length) this.grow(this.length + n);
    this.buf.set(chunk.subarray(0, n), this.length);
    this.length += n;
    return chunk.subarray(n);
  }

  /** The gathered bytes (a view: valid until the next fill or clear). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }

  /** Empties the buffer, keeping its memory for the next part. */
  clear(): void {
    this.length = 0;
  }

  private grow(needed: number): void {
    const size = Math.min(this.capacity, Math.max(needed, this.buf.length * 2, INITIAL));
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
}
