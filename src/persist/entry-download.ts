// Reads Actions cache entries (cache service v2) without @actions/cache's restore: one Twirp
// call (GetCacheEntryDownloadURL) names the entry and its signed URL, and the archive is then
// streamed from that URL through the decompressor into tar's parser, each file handed to the
// caller as it arrives. The library would make the same call, download to a temp archive, and
// only then run tar and zstd on it: a pack restored here costs one call and one transfer, its
// blobs land while the rest still downloads, and nothing is written twice. Connections are
// kept alive (undici's global pool), so later calls skip the connection setup.
// Entries are the library's: saves still go through it, so the version (paths, compression
// method, salt) and the archive (tar, zstd when the zstd binary is there, else gzip) are its.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { pipeline, type Readable, type Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { request } from 'undici';

/** How the library compresses archives: zstd when a zstd binary runs, else gzip. */
export type CompressionMethod = 'zstd-without-long' | 'gzip';

/** A file of an entry, as tar's parser reads it: consume `body` (or leave it, to skip the file). */
export interface EntryFile {
  /** The path inside the archive (relative to the workspace the entry was saved from). */
  path: string;
  size: number;
  body: AsyncIterable<Uint8Array>;
}

/** A lookup the service did not answer: `retryable` when it failed as the library would retry (5xx, no JSON). */
export class CacheServiceError extends Error {
  constructor(message: string, readonly retryable: boolean, readonly status?: number) {
    super(message);
    this.name = 'CacheServiceError';
  }
}

const TWIRP = '/twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL';
/** Statuses the library retries (and so treats as the service failing, not answering). */
const RETRYABLE = new Set([500, 502, 503, 504]);
/** The library's version salt. */
const VERSION_SALT = '1.0';

/** The library's GHES test: GHES has no cache service v2. */
function isGhes(env: NodeJS.ProcessEnv): boolean {
  const host = new URL(env.GITHUB_SERVER_URL || 'https://github.com').hostname.trimEnd().toUpperCase();
  return host !== 'GITHUB.COM' && !host.endsWith('.GHE.COM') && !host.endsWith('.LOCALHOST');
}

/** True when the runner gave the job cache service v2 (what this reader speaks). */
export function cacheServiceV2(env: NodeJS.ProcessEnv = process.env): boolean {
  return !!env.ACTIONS_CACHE_SERVICE_V2 && !!env.ACTIONS_RESULTS_URL && !isGhes(env);
}

/** The library's isFeatureAvailable: the runner gave the job a cache service (v2: ACTIONS_RESULTS_URL; v1: ACTIONS_CACHE_URL). */
export function cacheServiceAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  const v2 = !!env.ACTIONS_CACHE_SERVICE_V2 && !isGhes(env);
  return v2 ? !!env.ACTIONS_RESULTS_URL : !!env.ACTIONS_CACHE_URL;
}

/** False when the runner's ACTIONS_CACHE_MODE forbids reads (unknown modes permit, as in the library). */
export function cacheReadable(env: NodeJS.ProcessEnv = process.env): boolean {
  const mode = (env.ACTIONS_CACHE_MODE || '').trim().toLowerCase();
  return !['none', 'read', 'write', 'write-only'].includes(mode) || mode === 'read' || mode === 'write';
}

/** False when the runner's ACTIONS_CACHE_MODE forbids writes (unknown modes permit, as in the library). */
export function cacheWritable(env: NodeJS.ProcessEnv = process.env): boolean {
  const mode = (env.ACTIONS_CACHE_MODE || '').trim().toLowerCase();
  return !['none', 'read', 'write', 'write-only'].includes(mode) || mode === 'write' || mode === 'write-only';
}

let method: Promise<CompressionMethod> | undefined;

/** The library's choice, made once: zstd when `zstd --quiet --version` prints something. */
export function compressionMethod(): Promise<CompressionMethod> {
  method ??= new Promise((resolve) => {
    execFile('zstd', ['--quiet', '--version'], (_err, stdout, stderr) => resolve(`${stdout}${stderr}`.trim() === '' ? 'gzip' : 'zstd-without-long'));
  });
  return method;
}

/** The version an entry of `path` is saved under (the library's getCacheVersion, one path, not cross-OS). */
export function entryVersion(path: string, compression: CompressionMethod): string {
  const parts = [path, compression, ...(process.platform === 'win32' ? ['windows-only'] : []), VERSION_SALT];
  return createHash('sha256').update(parts.join('|')).digest('hex');
}

/**
 * Looks `key` up (then each restore key, as the service matches them): the entry's key and
 * signed download URL, or undefined when the service has none. Throws CacheServiceError when
 * the service fails or does not answer before `signal` aborts.
 */
export async function lookupEntry(path: string, key: string, restoreKeys: string[], signal: AbortSignal): Promise<{ key: string; url: string } | undefined> {
  const env = process.env;
  const version = entryVersion(path, await compressionMethod());
  const body = JSON.stringify({ key, ...(restoreKeys.length > 0 ? { restore_keys: restoreKeys } : {}), version });
  let res;
  try {
    res = await request(new URL(TWIRP, env.ACTIONS_RESULTS_URL), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${env.ACTIONS_RUNTIME_TOKEN ?? ''}`, 'user-agent': 'regcache' },
      body,
      signal,
    });
  } catch (err) {
    throw new CacheServiceError(`cache service: ${(err as Error).message}`, false);
  }
  let text: string;
  try {
    text = await res.body.text();
  } catch (err) {
    throw new CacheServiceError(`cache service: ${(err as Error).message}`, true, res.statusCode);
  }
  let answer: { ok?: boolean; signed_download_url?: string; matched_key?: string; msg?: string };
  try {
    answer = JSON.parse(text) as typeof answer;
  } catch {
    throw new CacheServiceError(`cache service: ${res.statusCode} without JSON`, true, res.statusCode);
  }
  if (res.statusCode < 200 || res.statusCode >= 300) {
    throw new CacheServiceError(`cache service: ${res.statusCode} ${answer.msg ?? ''}`.trim(), RETRYABLE.has(res.statusCode), res.statusCode);
  }
  if (!answer.ok || !answer.signed_download_url || !answer.matched_key) return undefined;
  return { key: answer.matched_key, url: answer.signed_download_url };
}

/** An archive body being decompressed: its bytes, a check once they ended, and a stop. */
interface Decompression {
  bytes: Readable;
  /** Throws when the decompressor failed after its output ended (the zstd binary's exit code). */
  finished(): Promise<void>;
  /** Stops it (and the zstd binary) on failure. */
  abort(): void;
}

/**
 * Decompresses an archive body; a failing body fails the output (never an uncaught error).
 * zstd: Node's own (22.15+), else the binary `zstdBinary` (the library's `zstd`).
 */
function decompress(body: Readable, compression: CompressionMethod, zstdBinary?: string): Decompression {
  const zstd = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
  if (compression === 'gzip' || (zstd && zstdBinary === undefined)) {
    const z: Transform = compression === 'gzip' ? zlib.createGunzip() : zstd!();
    // pipeline passes the body's errors on to z (and so to its reader) and destroys both.
    pipeline(body, z, () => {});
    return { bytes: z, finished: async () => {}, abort: () => z.destroy() };
  }
  const child = spawn(zstdBinary ?? 'zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'ignore'] });
  if (!child.stdin || !child.stdout) {
    // Node could not even set up the pipes (EMFILE): the 'error' event follows.
    child.once('error', () => {});
    throw new Error('zstd -d could not be started');
  }
  const stdout = child.stdout;
  let resolveExit!: (code: number | null) => void;
  const exited = new Promise<number | null>((resolve) => (resolveExit = resolve));
  child.once('close', (code) => resolveExit(code));
  // Not started (ENOENT, EAGAIN): the output fails with why.
  child.once('error', (err) => {
    stdout.destroy(err);
    resolveExit(-1);
  });
  pipeline(body, child.stdin, (err) => {
    if (err) stdout.destroy(err);
  });
  return {
    bytes: stdout,
    finished: async () => {
      const code = await exited;
      if (code !== 0) throw new Error(`zstd -d exited ${code}`);
    },
    abort: () => {
      stdout.destroy();
      child.kill();
    },
  };
}

/** How {@link readEntry} reads. */
export interface ReadOptions {
  /** Bounds every wait for the service's bytes. */
  idleTimeoutMs: number;
  /** Awaited before each chunk is taken: a download that waits here holds the sender back (TCP's window). */
  pace?: () => Promise<void>;
  /** Decompress zstd with this binary even where Node could (tests cover both ways on every Node). */
  zstdBinary?: string;
}

/** What readEntry throws when `onFile` threw (a local failure, not the entry's): `cause` is that error. */
export class EntryConsumerError extends Error {
  constructor(override readonly cause: unknown) {
    super(`reading an entry: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'EntryConsumerError';
  }
}

/**
 * What readEntry throws when the transfer failed (the connection, a timeout, a 429 or 5xx from
 * the blob storage): the service failing, not the entry being bad.
 */
export class EntryTransportError extends Error {
  constructor(override readonly cause: unknown) {
    super(`downloading an entry: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'EntryTransportError';
  }
}

/**
 * Downloads the archive at `url` and hands each regular file in it to `onFile`, one at a time,
 * in archive order (a file `onFile` leaves unread is skipped). Throws when the download, the
 * decompression or the archive fails (a truncated or corrupt entry), and EntryConsumerError
 * when `onFile` throws. A file being read when the download fails ends with that error.
 */
export async function readEntry(url: string, onFile: (f: EntryFile) => Promise<void>, o: ReadOptions): Promise<void> {
  const compression = await compressionMethod();
  let res;
  try {
    res = await request(url, { method: 'GET', headersTimeout: o.idleTimeoutMs, bodyTimeout: o.idleTimeoutMs });
  } catch (err) {
    throw new EntryTransportError(err);
  }
  if (res.statusCode !== 200) {
    res.body.resume();
    const err = new Error(`entry download: ${res.statusCode}`);
    throw res.statusCode === 429 || res.statusCode >= 500 ? new EntryTransportError(err) : err;
  }
  let failed: Error | undefined;
  /** The response failed (connection, timeout) first: the transfer's fault, not the entry's. */
  let transport: Error | undefined;
  res.body.once('error', (err) => {
    if (!failed) transport ??= err;
  });
  let archive: Decompression;
  try {
    archive = decompress(res.body, compression, o.zstdBinary);
  } catch (err) {
    res.body.destroy();
    throw err;
  }
  const parser = new Parser({ strict: true });
  let wake: () => void = () => {};
  const fail = (err: unknown) => {
    failed ??= err instanceof Error ? err : new Error(String(err));
    wake();
  };
  // A failing download wakes the loop wherever it waits (for a chunk, or for the parser).
  archive.bytes.once('error', fail);
  /** The file being handed to onFile. */
  let current: ReadEntry | undefined;
  let files = Promise.resolve();
  parser.on('entry', (entry: ReadEntry) => {
    if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile') {
      entry.resume();
      return;
    }
    // The failure is handed to onFile through its read (below), whenever it next reads.
    entry.on('error', () => {});
    files = files.then(async () => {
      if (failed) return void entry.resume();
      current = entry;
      try {
        await onFile({ path: entry.path, size: entry.size ?? 0, body: entry });
      } catch (err) {
        fail(failed ?? new EntryConsumerError(err));
      }
      current = undefined;
      // What onFile left unread is skipped, so that the parser goes on.
      if (!entry.emittedEnd) entry.resume();
    });
  });
  // Strict: what would be a warning (a truncated or corrupt archive) is an error.
  parser.on('error', fail);
  try {
    for await (const chunk of archive.bytes) {
      if (failed) break;
      if (o.pace) await o.pace();
      if (failed) break;
      if (!parser.write(chunk as Buffer)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          parser.once('drain', resolve);
        });
      }
    }
    if (!failed) await archive.finished();
    if (!failed) {
      const ended = once(parser, 'end');
      parser.end();
      await Promise.race([ended, new Promise<void>((resolve) => (wake = resolve))]);
    }
  } catch (err) {
    fail(err);
  }
  if (failed) {
    archive.abort();
    res.body.destroy();
    // A file half read ends with the failure, so that its writer is cancelled.
    current?.destroy(failed);
  }
  await files;
  if (failed && transport && !(failed instanceof EntryConsumerError)) throw new EntryTransportError(transport);
  if (failed) throw failed;
}
