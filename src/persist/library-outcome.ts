// How a call of @actions/cache ended, told from what the call returned or threw and from the
// service's answers to its requests (library-call.ts, worker-protocol.ts), never from what the
// library printed; and what the circuit breaker hears of it. The library makes this necessary:
// saveCache returns -1 for every failure (it catches the error, a ReserveCacheError whose message
// drops the service's answer, and prints it) and restoreCache returns undefined for a miss and a
// failure alike; only invalid input (ValidationError) escapes. The status of the reservation
// (CreateCacheEntry, or v1's POST caches) says what a refused save was: 409 the key is taken
// (saved by another job, or being uploaded), 429 the creation rate limit with its Retry-After.
//
// One case the answers cannot tell: a reservation answered 200 {ok: false} (the service
// declining it, e.g. "cache write denied" for a read-only token). Its reason is in the body,
// which the library discards and the diagnostics channel does not carry; with no upload after
// it, it is taken as a refused reservation, like a 409, and a lookup tells the rest.
import type { Exchange, WorkerReport } from './worker-protocol.js';
import type { LibraryCall } from './library-call.js';

/** What the circuit breaker hears: the service answered, failed, or failed as a dead service does (trip). */
export type BreakerNote = 'success' | 'failure' | 'trip';

/** How a save ended. `contended`: the key is taken (409, or declined): saved already, or being uploaded by another job. */
export interface SaveJudgement {
  finding: 'saved' | 'contended' | 'rate-limited' | 'failed';
  breaker: BreakerNote;
  /** For `rate-limited`: the answer's Retry-After, when it named one. */
  retryAfterMs?: number;
}

/** How a restore or lookup ended. */
export interface RestoreJudgement {
  outcome: 'restored' | 'missing' | 'unavailable';
  /** The key restored or found. */
  key?: string;
  breaker: BreakerNote;
}

/** Statuses the library retries (and so the answers of a failing service). */
const RETRYABLE = new Set([500, 502, 503, 504]);

const answered = (e: Exchange) => e.status !== undefined && e.status >= 200 && e.status < 300;

/** True when the library retried a call to the service: a retryable answer, or one call asked twice. */
function retried(exchanges: readonly Exchange[]): boolean {
  const calls = exchanges.filter((e) => e.kind !== 'transfer');
  if (calls.some((e) => e.status !== undefined && RETRYABLE.has(e.status))) return true;
  const kinds = calls.map((e) => e.kind).filter((k) => k !== 'api');
  return new Set(kinds).size < kinds.length;
}

/** A failure the service caused: a dead service's (retried) opens the breaker at once. */
const failure = (report: WorkerReport): BreakerNote => (retried(report.exchanges) ? 'trip' : 'failure');

/** A save (saveCache), judged. */
export function judgeSave(call: LibraryCall): SaveJudgement {
  const report = call.report;
  if (!report) return { finding: 'failed', breaker: 'failure' };
  if (report.thrown) return { finding: 'failed', breaker: 'failure' };
  if (typeof report.value === 'number' && report.value >= 0) return { finding: 'saved', breaker: 'success' };
  const i = report.exchanges.findLastIndex((e) => e.kind === 'reserve');
  const reservation = report.exchanges[i];
  // Nothing reserved: the library gave up before asking (the runner's cache mode forbids writes,
  // or the archive could not be made).
  if (!reservation) return { finding: 'failed', breaker: 'failure' };
  if (reservation.status === 429) {
    const s = reservation.retryAfterS;
    return { finding: 'rate-limited', breaker: 'success', ...(s !== undefined && s > 0 ? { retryAfterMs: s * 1000 } : {}) };
  }
  if (reservation.status === 409) return { finding: 'contended', breaker: 'success' };
  if (reservation.status === undefined || RETRYABLE.has(reservation.status)) return { finding: 'failed', breaker: failure(report) };
  // Another refusal (400, 403, ...): the service answered, and will answer the same again.
  if (!answered(reservation)) return { finding: 'failed', breaker: 'success' };
  // Reserved, then the upload or its finalization failed.
  if (report.exchanges.length > i + 1) return { finding: 'failed', breaker: failure(report) };
  // 200 without an upload: the service declined the reservation (see the header).
  return { finding: 'contended', breaker: 'success' };
}

/**
 * A restore or lookup (restoreCache), judged. A failure that took `slowMs` or more (the library
 * retried, or a connection hung) opens the breaker at once.
 */
export function judgeRestore(call: LibraryCall, slowMs: number): RestoreJudgement {
  if (call.timedOut) return { outcome: 'unavailable', breaker: 'trip' };
  const report = call.report;
  if (!report || report.thrown) return { outcome: 'unavailable', breaker: 'failure' };
  if (typeof report.value === 'string') return { outcome: 'restored', key: report.value, breaker: 'success' };
  const unavailable = (): RestoreJudgement => ({ outcome: 'unavailable', breaker: call.ms >= slowMs ? 'trip' : failure(report) });
  const lookup = report.exchanges.findLast((e) => e.kind === 'lookup');
  // Not looked up: the runner's cache mode forbids reads (the library's miss without asking).
  if (!lookup) return { outcome: 'missing', breaker: 'success' };
  if (!answered(lookup)) return unavailable();
  // Found, then the download or the extraction failed.
  if (report.exchanges.some((e) => e.kind === 'transfer')) return unavailable();
  // Answered: not there. After a retried request it still counts towards the breaker.
  return { outcome: 'missing', breaker: retried(report.exchanges) ? 'failure' : 'success' };
}
