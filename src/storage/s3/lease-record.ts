// A record that one server at a time holds for a while: the building block of WorkLease (gc,
// eviction) and FillClaims (one upstream fetch per blob). The record is JSON
// `{"owner":{"host","pid","id"},"expiresAt":<ms>}`; it is taken with a conditional write (create
// when there is none, If-Match on the ETag of an expired one), renewed with If-Match every third
// of its time to live, and removed on release if it is still this holder's.
//
// Clocks: `expiresAt` is the holder's wall clock, and another server compares it with its own.
// This assumes the servers sharing a bucket keep their clocks within a few seconds of each other
// (NTP), well below the time to live: a server whose clock runs ahead by more than the third of
// the time to live that renewal leaves may take over a lease that is still being renewed.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { S3Records } from './records.js';

/** Who holds a record: a host, a process, and an id of this one taking. */
export interface LeaseOwner {
  host: string;
  pid: number;
  id: string;
}

/** The record's contents. */
export interface LeaseBody {
  owner: LeaseOwner;
  /** Wall-clock ms after which anyone may take the record over. */
  expiresAt: number;
}

/** Options shared by the lease and the fill claims. */
export interface LeaseRecordOptions {
  /** The clock `expiresAt` is read from and compared with (default Date.now). */
  now?: () => number;
  /** Called once when a renewal finds the record no longer this holder's (or cannot renew it in time). */
  onLost?: (key: string, holder: LeaseOwner | undefined) => void;
}

/** The record's contents, or undefined when they are not a lease (then it is treated as expired). */
export function parseLease(data: Buffer): LeaseBody | undefined {
  try {
    const v = JSON.parse(data.toString('utf8')) as Partial<LeaseBody>;
    if (typeof v.expiresAt !== 'number' || typeof v.owner !== 'object' || v.owner === null) return undefined;
    return { owner: v.owner, expiresAt: v.expiresAt };
  } catch {
    return undefined;
  }
}

/** A record this server holds, renewed until released. */
export class LeaseRecord {
  private version: string;
  private expiresAt: number;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private lost = false;
  private released: Promise<void> | undefined;

  private constructor(
    private readonly records: S3Records,
    readonly key: string,
    readonly owner: LeaseOwner,
    private readonly ttlMs: number,
    private readonly opts: LeaseRecordOptions,
    taken: { version: string; expiresAt: number },
  ) {
    this.version = taken.version;
    this.expiresAt = taken.expiresAt;
    this.timer = setInterval(() => this.renew(), Math.max(1, Math.floor(ttlMs / 3)));
    this.timer.unref();
  }

  /**
   * Takes the record at `key` for `ttlMs` unless another holder's is still fresh (undefined
   * then, and when another server took it in the same moment).
   */
  static async take(records: S3Records, key: string, ttlMs: number, opts: LeaseRecordOptions = {}): Promise<LeaseRecord | undefined> {
    const now = opts.now ?? Date.now;
    const owner: LeaseOwner = { host: hostname(), pid: process.pid, id: randomBytes(8).toString('hex') };
    const expiresAt = now() + ttlMs;
    const body = JSON.stringify({ owner, expiresAt } satisfies LeaseBody);
    const existing = await records.readVersioned(key);
    let version: string | undefined;
    if (!existing) {
      version = await records.createVersioned(key, body);
    } else {
      const held = parseLease(existing.data);
      if (held && held.expiresAt > now()) return undefined;
      version = await records.replaceIfVersioned(key, body, existing.version);
    }
    return version === undefined ? undefined : new LeaseRecord(records, key, owner, ttlMs, opts, { version, expiresAt });
  }

  /** False once a renewal found the record taken over, or could not renew it before it expired. */
  get held(): boolean {
    return !this.lost && this.released === undefined;
  }

  /** Stops renewing and removes the record if it is still this holder's. Safe to call twice; never throws (a record left behind expires). */
  release(): Promise<void> {
    this.released ??= (async () => {
      clearInterval(this.timer);
      await this.renewing;
      if (this.lost) return;
      try {
        await this.records.removeIf(this.key, this.version);
      } catch {
        // The storage is unreachable: the record expires by itself.
      }
    })();
    return this.released;
  }

  private renew(): void {
    if (this.renewing || this.lost || this.released) return;
    this.renewing = (async () => {
      const now = this.opts.now ?? Date.now;
      const expiresAt = now() + this.ttlMs;
      const body = JSON.stringify({ owner: this.owner, expiresAt } satisfies LeaseBody);
      try {
        const version = await this.records.replaceIfVersioned(this.key, body, this.version);
        if (version === undefined) return this.lose();
        this.version = version;
        this.expiresAt = expiresAt;
      } catch {
        // Unreachable for now: the next tick tries again, unless the record has expired meanwhile.
        if (now() >= this.expiresAt) this.lose();
      }
    })().finally(() => {
      this.renewing = undefined;
    });
  }

  private async lose(): Promise<void> {
    this.lost = true;
    clearInterval(this.timer);
    let holder: LeaseOwner | undefined;
    try {
      const current = await this.records.read(this.key);
      holder = current ? parseLease(current)?.owner : undefined;
    } catch {
      // Whoever holds it now stays unnamed.
    }
    this.opts.onLost?.(this.key, holder);
  }
}
