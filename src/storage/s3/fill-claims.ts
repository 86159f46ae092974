// One upstream fetch per blob among the servers sharing a bucket: the server that takes the
// claim record `fills/<alg>/<hex>` fetches the blob, renewing the claim while it does; the
// others wait for the blob to land, or for the claim to expire (its holder died) and take it
// over. The record, its renewal and the clock assumption are lease-record.ts's.
import type { Digest } from '../../oci/index.js';
import type { FillClaim, FillClaims } from '../backend.js';
import { fillKey } from './keys.js';
import { LeaseRecord, type LeaseRecordOptions } from './lease-record.js';
import type { S3Records } from './records.js';

/** Fill claims, as records in the bucket. */
export class S3FillClaims implements FillClaims {
  constructor(private readonly records: S3Records, private readonly opts: LeaseRecordOptions = {}) {}

  async claim(d: Digest, ttlMs: number): Promise<FillClaim | undefined> {
    const record = await LeaseRecord.take(this.records, fillKey(d), ttlMs, this.opts);
    return record && { release: () => record.release() };
  }
}
