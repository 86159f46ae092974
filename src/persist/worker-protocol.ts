// What passes between ActionsCache (the parent, library-call.ts) and the child process that makes
// one @actions/cache call (cache-worker.ts): the call asked for (the child's argument), and the
// child's report (one IPC message): what the library returned or threw, and each HTTP exchange
// the call made, as the service answered it. Exchanges name their role in the protocol, never
// their URL (signed URLs carry credentials).

/** One library call. The child's environment and working directory are the parent's choice. */
export type WorkerRequest =
  | { op: 'save'; path: string; key: string }
  | { op: 'restore'; path: string; key: string; restoreKeys: string[]; lookupOnly: boolean; timeoutMs: number };

/**
 * What an HTTP request was for. `lookup`, `reserve` and `finalize` are the service's calls (v2
 * Twirp: GetCacheEntryDownloadURL, CreateCacheEntry, FinalizeCacheEntryUpload; v1 on GHES: GET
 * _apis/artifactcache/cache, POST .../caches, POST .../caches/<id>); `api` another call to the
 * service; `transfer` the archive's bytes (blob storage, or v1's PATCH chunks).
 */
export type ExchangeKind = 'lookup' | 'reserve' | 'finalize' | 'api' | 'transfer';

/** One HTTP request of the call and the service's answer. */
export interface Exchange {
  kind: ExchangeKind;
  /** The answer's status; absent when none came (the connection failed). */
  status?: number;
  /** The answer's Retry-After in seconds, when it had one. */
  retryAfterS?: number;
  /** Why no answer came (ECONNRESET, ECONNREFUSED, ...), when node said. */
  error?: string;
}

/** The child's one message: the library's result, and the exchanges in the order they began. */
export interface WorkerReport {
  /** What the call returned: saveCache's entry id (-1 when it did not save), restoreCache's key. */
  value?: number | string;
  /** What the call threw (the library throws only for invalid input: ValidationError). */
  thrown?: { name: string; message: string };
  exchanges: Exchange[];
}

const TWIRP = /\/twirp\/github\.actions\.results\.api\.v1\.CacheService\/(\w+)$/;
const V1 = /\/_apis\/artifactcache\/(.*)$/;

/** The role of a request of the library, from its method and path (with query). */
export function exchangeKind(method: string, path: string): ExchangeKind {
  const bare = path.split('?')[0] ?? path;
  const twirp = TWIRP.exec(bare);
  if (twirp) {
    if (twirp[1] === 'GetCacheEntryDownloadURL') return 'lookup';
    if (twirp[1] === 'CreateCacheEntry') return 'reserve';
    if (twirp[1] === 'FinalizeCacheEntryUpload') return 'finalize';
    return 'api';
  }
  const v1 = V1.exec(bare);
  if (!v1) return 'transfer';
  const resource = v1[1]!;
  if (method === 'GET' && resource === 'cache') return 'lookup';
  if (method === 'POST' && resource === 'caches') return 'reserve';
  if (method === 'POST' && /^caches\/\d+$/.test(resource)) return 'finalize';
  if (method === 'PATCH') return 'transfer';
  return 'api';
}
