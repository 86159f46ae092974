// Work that runs once among the servers sharing a bucket (gc, an eviction pass): the server that
// takes the lease record `leases/<name>` runs it, renewing the record while it runs; the others
// skip it while that record is fresh. A server that dies holding the lease leaves a record that
// expires within the time to live, and the next server to ask takes it over. The record, its
// renewal and the clock assumption are lease-record.ts's.
import type { WorkLease } from '../backend.js';
import { leaseKey } from './keys.js';
import { LeaseRecord, type LeaseRecordOptions } from './lease-record.js';
import type { S3Records } from './records.js';

/** How long a lease lasts without renewal, unless told otherwise: 30 s. */
export const DEFAULT_LEASE_TTL_MS = 30_000;

/** Options of {@link S3WorkLease}. */
export interface S3WorkLeaseOptions extends LeaseRecordOptions {
  /** How long a lease lasts without renewal (default {@link DEFAULT_LEASE_TTL_MS}); renewed every third of it. */
  ttlMs?: number;
}

/** Leases on work, as records in the bucket. */
export class S3WorkLease implements WorkLease {
  private readonly ttlMs: number;

  constructor(private readonly records: S3Records, private readonly opts: S3WorkLeaseOptions = {}) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  }

  async runOnce<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`lease name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-' only`);
    const lease = await LeaseRecord.take(this.records, leaseKey(name), this.ttlMs, this.opts);
    if (!lease) return undefined;
    try {
      return await fn();
    } finally {
      await lease.release();
    }
  }
}
