// Read buffers for serving blob files, reused across answers instead of allocated per read (a
// file stream allocates one per read: a 1 GB pull made 1 GB of garbage outside V8's heap). Each
// answer holds at most two; their size shrinks as more answers stream at once, so the memory held
// stays within a budget, and a few free ones are kept for the next answers.
import { Buffer } from 'node:buffer';

/** The size classes, largest first: 256 KiB while few answers stream, down to 64 KiB. */
export const BUFFER_SIZES = [256 * 1024, 128 * 1024, 64 * 1024] as const;
/** What the buffers of all answers in flight may add up to before they get smaller. */
const BUDGET_BYTES = 16 * 1024 * 1024;
/** What each size class keeps free for reuse. */
const FREE_BYTES_PER_SIZE = 4 * 1024 * 1024;

const free = new Map<number, Buffer[]>(BUFFER_SIZES.map((s) => [s, []]));
let streaming = 0;

/** The buffers of one answer: {@link take} up to two, {@link release} each that is no longer in use. */
export class BufferLease {
  private ended = false;

  private constructor(readonly size: number) {}

  /**
   * Starts a lease for an answer of `length` bytes: buffers of the largest class that keeps two
   * per streaming answer within the budget, or of the smallest class that holds `length`.
   */
  static start(length: number): BufferLease {
    streaming++;
    const share = BUDGET_BYTES / (2 * streaming);
    const fitting = BUFFER_SIZES.find((s) => s <= share) ?? BUFFER_SIZES[BUFFER_SIZES.length - 1]!;
    const small = [...BUFFER_SIZES].reverse().find((s) => s >= length) ?? fitting;
    return new BufferLease(Math.min(fitting, small));
  }

  /** A buffer of this lease's size, reused when one is free. */
  take(): Buffer {
    return free.get(this.size)!.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Gives back a buffer that no write holds any more. */
  release(buf: Buffer): void {
    const list = free.get(buf.length);
    if (list && (list.length + 1) * buf.length <= FREE_BYTES_PER_SIZE) list.push(buf);
  }

  /** Ends the lease (once): the answer no longer counts as streaming. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    streaming--;
  }
}

/** Answers holding a lease now (for tests). */
export function streamingAnswers(): number {
  return streaming;
}
