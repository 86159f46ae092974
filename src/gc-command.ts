// `regcache gc`: collects the garbage of a storage directory and says what it deleted, what it
// kept and why, and which upload sessions are incomplete. When a server holds the storage, the
// server collects (through its lifetime owner, beside its traffic), asked over the storage's
// gc socket; otherwise gc opens the storage itself. A storage directory that does not exist is
// refused (a typo would otherwise create an empty one and report nothing to collect). A storage
// on S3 (s3://bucket/prefix) is collected here, under the bucket's work lease, beside the
// servers that use it.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command, Option } from 'commander';
import { DEFAULT_GC_GRACE_MS, DEFAULT_UPLOAD_MAX_AGE_MS, Layout, openS3Backend, openStorage, StorageLockedError, type GcResult, type S3StorageSettings } from './storage/index.js';
import { askServerToCollect, type GcRequest } from './server/index.js';

/** What the gc command needs from the command line's shared parsers. */
export interface GcCommandTools {
  duration(v: string): number;
  /** A duration option whose default is shown as written (`1h`). */
  durationOption(flags: string, description: string, defaultMs: number, shown: string): Option;
  fail(err: unknown): never;
  storageDir(flag: string | undefined): { dir: string; from: string };
}

/** Adds `gc` to the program. */
export function registerGc(cli: Command, tools: GcCommandTools): void {
  cli
    .command('gc')
    .description('delete blobs that nothing references and upload sessions left idle (asks the running server when one holds the storage)')
    .option('--storage <dir|s3-url>', 'storage directory, or a shared bucket s3://<bucket>/<prefix> (default: $REGCACHE_STORAGE or the user cache directory)')
    .option('--s3-endpoint <url>', 'with an s3:// storage: the S3 endpoint (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)')
    .option('--s3-region <region>', 'with an s3:// storage: the region (default: $AWS_REGION, else us-east-1)')
    .option('--s3-path-style', 'with an s3:// storage: path-style addressing (endpoint/bucket/key)')
    .addOption(tools.durationOption('--grace <duration>', 'keep unreferenced blobs younger than this', DEFAULT_GC_GRACE_MS, '1h'))
    .addOption(tools.durationOption('--upload-max-age <duration>', 'remove upload sessions idle this long', DEFAULT_UPLOAD_MAX_AGE_MS, '24h'))
    .option('--dry-run', 'say what would be deleted, delete nothing')
    .option('--json', 'print the result as one JSON line')
    .action(async (o: { storage?: string; grace?: number; uploadMaxAge?: number; dryRun?: boolean; json?: boolean; s3Endpoint?: string; s3Region?: string; s3PathStyle?: boolean }) => {
      const { dir, from } = tools.storageDir(o.storage);
      const grace = o.grace ?? DEFAULT_GC_GRACE_MS;
      const uploadMaxAge = o.uploadMaxAge ?? DEFAULT_UPLOAD_MAX_AGE_MS;
      const request: GcRequest = { gracePeriodMs: grace, uploadMaxAgeMs: uploadMaxAge, dryRun: !!o.dryRun };
      try {
        if (dir.startsWith('s3://')) {
          const s3: S3StorageSettings = { url: dir, ...(o.s3Endpoint ? { endpoint: o.s3Endpoint } : {}), ...(o.s3Region ? { region: o.s3Region } : {}), ...(o.s3PathStyle ? { forcePathStyle: true } : {}) };
          const result = await collectBucket(s3, request);
          process.stdout.write(o.json ? `${JSON.stringify(result)}\n` : report(dir, result, { grace, uploadMaxAge }));
          return;
        }
        const exists = await stat(dir).then((s) => s.isDirectory(), () => false);
        if (!exists) throw new Error(`${from} ${dir} is not a storage directory (it does not exist); nothing to collect`);
        const { result, by } = await collect(dir, request);
        process.stdout.write(o.json ? `${JSON.stringify(result)}\n` : report(dir, result, { grace, uploadMaxAge, by }));
      } catch (err) {
        tools.fail(err);
      }
    });
}

/** Collects in the storage itself, or asks the server that holds it. */
async function collect(dir: string, request: GcRequest): Promise<{ result: GcResult; by?: number }> {
  let storage;
  try {
    // Upload sessions are left to the collection, which reports them (the open removes only broken ones).
    storage = await openStorage(dir, { uploadMaxAgeMs: Number.POSITIVE_INFINITY });
  } catch (err) {
    if (!(err instanceof StorageLockedError)) throw err;
    const socket = new Layout(dir).gcSocket;
    try {
      const { pid, result } = await askServerToCollect(socket, request);
      return { result, by: pid };
    } catch (asked) {
      throw new Error(`${err.message}, and it did not collect: ${(asked as Error).message} (${socket}); stop it, or run gc where it runs`);
    }
  }
  try {
    return { result: await storage.gc(request) };
  } finally {
    await storage.close();
  }
}

/** Collects in a storage on S3, with a temp directory of its own for what it reads. */
async function collectBucket(s3: S3StorageSettings, request: GcRequest): Promise<GcResult> {
  const local = await mkdtemp(join(tmpdir(), 'regcache-gc-'));
  try {
    const storage = await openStorage(local, { uploadMaxAgeMs: Number.POSITIVE_INFINITY, shared: await openS3Backend(s3) });
    try {
      return await storage.gc(request);
    } finally {
      await storage.close();
    }
  } finally {
    await rm(local, { recursive: true, force: true });
  }
}

/** A size as people read it: 12 B, 4.2 KB, 301.0 MB. */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** A duration as written on the command line: 0s, 1m30s, 15m, 1h, 1h30m, 24h, 72h (two units at most). */
export function formatDuration(ms: number): string {
  if (ms < 1000) return ms === 0 ? '0s' : `${ms}ms`;
  let s = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [['h', 3_600], ['m', 60], ['s', 1]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.slice(0, 2).join('');
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The human report of a collection. */
export function report(dir: string, r: GcResult, o: { grace: number; uploadMaxAge: number; by?: number | undefined }): string {
  const lines = [`regcache gc: ${dir}${o.by !== undefined ? ` (collected by the server running on it, pid ${o.by})` : ''}${r.dryRun ? ' (dry run: nothing is deleted)' : ''}`];
  const verb = r.dryRun ? 'would delete' : 'deleted';
  lines.push(`${verb} ${plural(r.deleted, 'blob')} (${formatBytes(r.deletedBytes)}) that nothing references`);
  lines.push(`kept ${plural(r.marked, 'blob')} that manifests or the cache reference`);
  if (r.keptRecent > 0) {
    lines.push(`kept ${plural(r.keptRecent, 'blob')} (${formatBytes(r.keptRecentBytes)}) younger than --grace ${formatDuration(o.grace)}; --grace 0 deletes them now`);
  }
  if (r.keptInUse > 0) lines.push(`kept ${plural(r.keptInUse, 'blob')} in use (being served or filled, or pushed during the collection)`);
  if (r.uploads.length === 0) {
    lines.push('no incomplete uploads');
  } else {
    const bytes = r.uploads.reduce((n, u) => n + u.size, 0);
    lines.push(`${plural(r.uploads.length, 'incomplete upload')} (${formatBytes(bytes)}):`);
    for (const u of r.uploads) {
      const fate = u.removed
        ? `${r.dryRun ? 'would remove' : 'removed'} (idle past --upload-max-age ${formatDuration(o.uploadMaxAge)})`
        : `kept (idle less than --upload-max-age ${formatDuration(o.uploadMaxAge)})`;
      lines.push(`  ${u.repository ?? '(no record)'} ${u.id}: ${formatBytes(u.size)}, idle ${formatDuration(u.idleMs)}: ${fate}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
