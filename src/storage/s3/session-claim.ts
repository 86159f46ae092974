// A request's hold on an upload session kept in a bucket, so that two replicas never advance
// one session at once: the claim is written into session.json by compare-and-swap on its ETag
// (a replica that loses the swap, or finds a claim still fresh, answers UploadBusyError), renewed
// by every change the request makes and by a timer while it streams, and dropped by its last
// change. A replica that dies holding a claim blocks the session until the claim's time runs out.
import { randomUUID } from 'node:crypto';
import { UploadBusyError, UploadNotFoundError } from '../errors.js';
import type { SessionState, UploadObjects } from './upload-objects.js';

/** A session held by one request of this process. */
export class SessionClaim {
  readonly owner = randomUUID();
  /** Set once a change failed: every later change fails with it. */
  private lost: Error | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  /** The claim was dropped (released, or the session removed). */
  private ended = false;

  private constructor(
    private readonly objects: UploadObjects,
    readonly id: string,
    public state: SessionState,
    private etag: string,
    private readonly leaseMs: number,
  ) {}

  /**
   * Claims session `id` of `repository`. Throws UploadNotFoundError when there is no such
   * session, UploadBusyError when a fresh claim holds it or another replica changed it meanwhile.
   */
  static async take(objects: UploadObjects, id: string, repository: string, leaseMs: number): Promise<SessionClaim> {
    const found = await objects.read(id);
    if (!found || found.state.removing || found.state.repository !== repository) throw new UploadNotFoundError(id);
    const now = Date.now();
    if (found.state.claim && found.state.claim.until > now) throw new UploadBusyError(id);
    const claim = new SessionClaim(objects, id, found.state, found.etag, leaseMs);
    const next = claim.next({});
    const etag = await objects.replace(id, next, found.etag);
    if (etag === undefined) throw new UploadBusyError(id);
    claim.state = next;
    claim.etag = etag;
    claim.timer = setInterval(() => void claim.commit({}).catch(() => {}), Math.max(1000, leaseMs / 3));
    claim.timer.unref();
    return claim;
  }

  /** Writes `patch` into the session (renewing the claim, or dropping it with `release`). */
  commit(patch: Partial<SessionState>, opts: { release?: boolean } = {}): Promise<void> {
    const run = this.chain.then(async () => {
      if (this.lost) throw this.lost;
      if (this.ended) throw new UploadBusyError(this.id);
      const next = this.next(patch, opts.release);
      const etag = await this.objects.replace(this.id, next, this.etag).catch((err: unknown) => {
        this.lost = err as Error;
        throw err;
      });
      if (etag === undefined) {
        this.lost = new UploadBusyError(this.id);
        throw this.lost;
      }
      this.state = next;
      this.etag = etag;
      if (opts.release) this.stop();
    });
    this.chain = run.catch(() => {});
    return run;
  }

  /** Ends the claim: released when still held (best effort; else it runs out), or forgotten after a removal. */
  async end(removed = false): Promise<void> {
    if (this.ended) return;
    if (removed) return this.stop();
    if (!this.lost) {
      await this.commit({}, { release: true }).catch(() => {});
      if (this.ended) return;
    }
    this.stop();
    // A change failed: the ETag may be unknown; drop the claim if session.json still names it.
    const found = await this.objects.read(this.id).catch(() => undefined);
    if (found?.state.claim?.owner === this.owner) {
      await this.objects.replace(this.id, { ...found.state, claim: undefined }, found.etag).catch(() => {});
    }
  }

  private stop(): void {
    this.ended = true;
    clearInterval(this.timer);
  }

  private next(patch: Partial<SessionState>, release = false): SessionState {
    const now = Date.now();
    const next: SessionState = { ...this.state, ...patch, updatedAt: now, claim: release ? undefined : { owner: this.owner, until: now + this.leaseMs } };
    if (!next.assembledKey) next.size = next.parts.reduce((sum, p) => sum + p.size, 0) + next.tailSize;
    if (!next.claim) delete next.claim;
    return next;
  }
}
