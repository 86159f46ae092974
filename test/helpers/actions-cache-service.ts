// Test helper: a local stand-in of the GitHub Actions cache service (v2, Twirp JSON), with the
// bytes in real Azure blob storage (azurite, run as a child process). The real @actions/cache
// client, pointed at it through the environment the runner would give a job (see env()), saves
// and restores exactly as it does on GitHub, and the stand-in records what it was asked.
//
// What the client (node_modules/@actions/cache 6.x, the ground truth) does, and what is served:
//   saveCache:    tar+compress first, then POST .../CacheService/CreateCacheEntry {key, version}
//                 -> {ok, signed_upload_url}; BlockBlobClient.uploadFile(signed_upload_url) (one
//                 Put Blob up to 128 MiB, else 64 MiB Put Blocks + Put Block List); then
//                 FinalizeCacheEntryUpload {key, version, size_bytes: "<int64 as string>"}
//                 -> {ok, entry_id: "<int64>"}; returns parseInt(entry_id).
//   restoreCache: GetCacheEntryDownloadURL {key, restore_keys?, version}
//                 -> {ok, signed_download_url, matched_key}; ok:false is a miss (undefined, no
//                 warning); lookupOnly stops here. The download uses the Azure SDK (HEAD, then
//                 ranged GETs of 4 MiB, 8 at a time) only when the URL's host ends in
//                 .blob.core.windows.net, else one plain GET (see BlobHostMode).
//   Twirp errors: a non-2xx answer must have a JSON body ({code, msg}); a body that is not JSON
//                 counts as retryable. 500/502/503/504 are retried 5 times (3 s, then x1.5
//                 with jitter: ~25-35 s in all); 429 is never retried (a warning "You've hit a
//                 rate limit, your rate limit will reset in N seconds" when Retry-After > 0);
//                 any other status fails at once, and so do ECONNRESET, ECONNREFUSED, ETIMEDOUT,
//                 ENOTFOUND and EHOSTUNREACH.
//                 saveCache turns every CreateCacheEntry failure (409, 429, ...) into -1 with the
//                 info line "Failed to save: Unable to reserve cache with key K, another job may
//                 be creating this cache."; restoreCache turns every failure (but an invalid key)
//                 into undefined with a warning "Failed to restore: ...".
//
// The service rules served here: entries are immutable per (scope, key, version) - a second
// CreateCacheEntry is 409 already_exists, also while the first is still uploading; lookups try,
// per readable scope of the token (its own ref first, then the default or base branch), the key
// exactly, the key as a prefix, then each restore key exactly and as a prefix, newest first, only
// finalized entries of the same version; beyond `createsPerMinute` creations in a rolling minute
// CreateCacheEntry answers 429 resource_exhausted with Retry-After; past `quotaBytes` the least
// recently used entries (last lookup hit, else creation) are evicted whole, the blob deleted.
// A token without a writable scope gets HTTP 200 {ok:false, message:"cache write denied: ..."}.
//
// Scopes come from the runtime token, as on GitHub: a JWT whose `ac` claim is a JSON *string*
// like '[{"Scope":"refs/heads/feature","Permission":3},{"Scope":"refs/heads/main","Permission":1}]'
// (1 read, 2 write). The stand-in only accepts tokens it issued (token, tokenFor(), env()).
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BlobSASPermissions,
  BlobServiceClient,
  type ContainerClient,
  generateBlobSASQueryParameters,
  SASProtocol,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { type ChildHandle, startProcess, tempDir, waitFor } from './proc.js';

/** Azurite's well-known development account and key (public, documented by Microsoft). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/** The Twirp service path prefix of cache service v2. */
export const TWIRP_PREFIX = '/twirp/github.actions.results.api.v1.CacheService/';

const REPO_ROOT = new URL('../../', import.meta.url).pathname;
const AZURITE_BLOB_MAIN = join(REPO_ROOT, 'node_modules/azurite/dist/src/blob/main.js');
const CONTAINER = 'actions-cache';
/** SAS service version: the newest azurite 3.35 knows (the SDK's own default is newer). */
const SAS_VERSION = '2025-11-05';
const AZURE_BLOB_SUFFIX = '.blob.core.windows.net';

/**
 * How signed URLs name the blob host.
 * - 'ip': http://127.0.0.1:<port>/devstoreaccount1/... (default). Nothing can leave loopback, but
 *   @actions/cache then downloads with one plain GET instead of the Azure SDK.
 * - 'azure': http://devstoreaccount1.blob.core.windows.net:<port>/..., so the client takes the SDK
 *   download path it takes on GitHub (HEAD + ranged GETs). That host must resolve to 127.0.0.1:
 *   env() adds NODE_OPTIONS with a preload doing that for child processes; in this process call
 *   routeAzureBlobHostsToLoopback(). A process without either would look the name up in DNS.
 */
export type BlobHostMode = 'ip' | 'azure';

/**
 * How the service is down. 'reset' (and true): every connection is closed at once (the client
 * sees ECONNRESET and gives up without retrying). 'unavailable': Twirp answers 503
 * {code:"unavailable"} (the client retries 5 times, ~25-35 s) and blob requests 503 ServerBusy.
 */
export type DownMode = 'reset' | 'unavailable';

export interface ActionsCacheServiceOptions {
  /** Repository cache size; past it, least recently used entries are evicted. Default 10 GiB. */
  quotaBytes?: number;
  /** CreateCacheEntry calls accepted per rolling minute (per repository). Default 200. */
  createsPerMinute?: number;
  /** GetCacheEntryDownloadURL calls accepted per rolling minute. Default: unlimited. */
  lookupsPerMinute?: number;
  /** The repository's default branch. Default 'main'. */
  defaultBranch?: string;
  /** Delay added before answering each Twirp and each blob request. Default 0. */
  latencyMs?: number;
  down?: boolean | DownMode;
  blobHost?: BlobHostMode;
  /** GITHUB_REPOSITORY. Default 'regcache-tests/repo'. */
  repository?: string;
  /** Lifetime of signed URLs. Default 1 hour. */
  signedUrlTtlMs?: number;
}

/** Options of env() / processEnv() / tokenFor(): which job the environment is for. */
export interface RunnerEnvOptions {
  /**
   * A branch name ('feature'), or a full ref ('refs/heads/feature', 'refs/tags/v1',
   * 'refs/pull/7/merge'). Default: the default branch.
   */
  ref?: string;
  /** For a pull request ref: its base branch (GITHUB_BASE_REF). Default: the default branch. */
  baseRef?: string;
  /** A token whose scopes are all read-only (saves are then denied by the service). */
  readOnly?: boolean;
  /** ACTIONS_CACHE_MODE as the runner would export it (read / write / write-only / none). */
  cacheMode?: string;
  /** GITHUB_WORKSPACE (tar archives paths relative to it). */
  workspace?: string;
  /** RUNNER_TEMP (where the client writes the archive). Default: a dir of this service. */
  runnerTemp?: string;
  runId?: number;
  runAttempt?: number;
  job?: string;
}

/** One cache entry as the service holds it. */
export interface CacheEntryRecord {
  id: number;
  key: string;
  version: string;
  /** The ref the entry belongs to, e.g. 'refs/heads/main'. */
  scope: string;
  state: 'reserved' | 'finalized' | 'evicted';
  /** Size of the stored blob at finalize (what counts toward the quota). */
  sizeBytes?: number;
  /** size_bytes as the client reported it. */
  reportedSizeBytes?: number;
  createdAt: number;
  finalizedAt?: number;
  /** Last GetCacheEntryDownloadURL that matched it (lookupOnly included), else createdAt. */
  lastAccessedAt: number;
  /** Download URLs handed out for it. */
  hits: number;
  evictedAt?: number;
  evictedBy?: 'quota' | 'manual';
  blobName: string;
  /** Set by tamper(). */
  tampered?: boolean;
}

/** One Twirp call as the service answered it. */
export interface TwirpRequestRecord {
  kind: 'twirp';
  /** 'CreateCacheEntry', 'FinalizeCacheEntryUpload', 'GetCacheEntryDownloadURL', or the path. */
  method: string;
  at: number;
  ms: number;
  status: number;
  /** The Twirp error code when status is not 200. */
  code?: string;
  /** The ref of the token's first scope, when the token was valid. */
  ref?: string;
  retryAfter?: number;
  request: unknown;
  response: unknown;
  /** 'reset' when the connection was closed instead of answered (down). */
  outcome?: 'reset';
}

/** One request to blob storage (through the stand-in's front, which forwards to azurite). */
export interface BlobRequestRecord {
  kind: 'blob';
  /** HTTP method. */
  method: string;
  /** Blob operation: PutBlob, PutBlock, PutBlockList, GetBlob, GetBlobProperties, or METHOD comp. */
  op: string;
  /** Container/blob path, without the account. */
  blob: string;
  /** x-ms-range or Range, when given. */
  range?: string;
  at: number;
  ms: number;
  status: number;
  bytesIn: number;
  bytesOut: number;
  outcome?: 'reset';
}

export type RequestRecord = TwirpRequestRecord | BlobRequestRecord;

export interface ActionsCacheService {
  /** ACTIONS_RESULTS_URL, with the trailing slash the runner gives it. */
  readonly url: string;
  /** ACTIONS_RUNTIME_TOKEN of a job on the default branch. */
  readonly token: string;
  /** Base URL of the blob front (what signed URLs point at), ending in the account or host. */
  readonly blobEndpoint: string;
  readonly defaultBranch: string;
  readonly azurite: ChildHandle;
  /** A runtime token for a job on this ref (see RunnerEnvOptions.ref). */
  tokenFor(ref?: string | RunnerEnvOptions): string;
  /** The variables the runner sets for a job on this ref (add them to a clean environment). */
  env(ref?: string | RunnerEnvOptions): Record<string, string>;
  /**
   * A whole environment for a client process: `base` (default process.env) without inherited
   * ACTIONS_*, GITHUB_*, RUNNER_*, proxy and cache-tuning variables, plus env(ref).
   */
  processEnv(ref?: string | RunnerEnvOptions, base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** Snapshot of the entries (all states) and of every request so far, oldest first. */
  records(): { entries: CacheEntryRecord[]; requests: RequestRecord[] };
  setDown(down: boolean | DownMode): void;
  /**
   * Signed URLs name `base` (e.g. a proxy in front of the blob front, ending in the account as
   * blobEndpoint does) instead of the blob front itself; undefined restores the default.
   */
  setSignedUrlBase(base: string | undefined): void;
  /** Delays every answer by `ms`, or with `twirpMethods` only the answers to those Twirp calls (e.g. slow lookups). */
  setLatency(ms: number, twirpMethods?: string[]): void;
  /** Evicts the finalized entries with this key (optionally one version/scope); returns them. */
  evict(key: string, filter?: EntryFilter): Promise<CacheEntryRecord[]>;
  /** Flips bytes in the middle of the newest finalized entry with this key; returns it. */
  tamper(key: string, filter?: EntryFilter & { offset?: number; length?: number }): Promise<CacheEntryRecord>;
  /** Closes the servers, stops azurite by PID and removes the temp dir; idempotent. */
  stop(): Promise<void>;
}

export interface EntryFilter {
  version?: string;
  scope?: string;
}

interface Scope {
  Scope: string;
  Permission: number;
}

class TwirpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    msg: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(msg);
  }
}

const READ = 1;
const WRITE = 2;
const MAX_BODY = 1024 * 1024;

/** NODE_OPTIONS preload (a data: URL) resolving *.blob.core.windows.net to 127.0.0.1. */
const DNS_PRELOAD_SOURCE = `import dns from 'node:dns';
const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  if (typeof options === 'function') { callback = options; options = {}; }
  if (typeof options === 'number') options = { family: options };
  if (typeof host === 'string' && host.toLowerCase().endsWith('${AZURE_BLOB_SUFFIX}')) {
    if (options && options.all) process.nextTick(callback, null, [{ address: '127.0.0.1', family: 4 }]);
    else process.nextTick(callback, null, '127.0.0.1', 4);
    return {};
  }
  return lookup.call(this, host, options, callback);
};`;
const DNS_PRELOAD = `--import=data:text/javascript;base64,${Buffer.from(DNS_PRELOAD_SOURCE).toString('base64')}`;

let loopbackRouting: { undo: () => void; users: number } | undefined;

/**
 * Makes this process resolve *.blob.core.windows.net to 127.0.0.1 (for blobHost 'azure' with
 * @actions/cache called in-process). Returns an undo function.
 */
export async function routeAzureBlobHostsToLoopback(): Promise<() => void> {
  const dns = (await import('node:dns')).default;
  if (!loopbackRouting) {
    const original = dns.lookup;
    const patched = function (this: unknown, host: string, options: unknown, callback?: unknown) {
      let cb = callback as ((...a: unknown[]) => void) | undefined;
      let opts = options as { all?: boolean } | number | undefined;
      if (typeof opts === 'function') {
        cb = opts as unknown as (...a: unknown[]) => void;
        opts = {};
      }
      if (typeof opts === 'number') opts = {};
      if (typeof host === 'string' && host.toLowerCase().endsWith(AZURE_BLOB_SUFFIX) && cb) {
        if (opts?.all) process.nextTick(cb, null, [{ address: '127.0.0.1', family: 4 }]);
        else process.nextTick(cb, null, '127.0.0.1', 4);
        return {};
      }
      return (original as (...a: unknown[]) => unknown).call(this, host, options, callback);
    };
    dns.lookup = patched as unknown as typeof dns.lookup;
    loopbackRouting = {
      users: 0,
      undo: () => {
        dns.lookup = original;
      },
    };
  }
  const routing = loopbackRouting;
  routing.users++;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    if (--routing.users === 0) {
      routing.undo();
      loopbackRouting = undefined;
    }
  };
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

/** Decodes a JWT's payload (no signature check), or undefined when it is not JWT-shaped. */
export function decodeJwtPayload(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The cache scopes of a runtime token's `ac` claim (a JSON string on GitHub; an array accepted). */
export function tokenScopes(token: string): Scope[] | undefined {
  const claims = decodeJwtPayload(token);
  if (!claims) return undefined;
  let ac = claims.ac;
  if (typeof ac === 'string') {
    try {
      ac = JSON.parse(ac);
    } catch {
      return undefined;
    }
  }
  if (!Array.isArray(ac)) return undefined;
  return ac.filter(
    (s): s is Scope => !!s && typeof s === 'object' && typeof (s as Scope).Scope === 'string' && typeof (s as Scope).Permission === 'number',
  );
}

function fullRef(ref: string): string {
  return ref.startsWith('refs/') ? ref : `refs/heads/${ref}`;
}

function shortName(ref: string): string {
  return ref.replace(/^refs\/(heads|tags)\//, '');
}

function normalizeEnvOptions(ref?: string | RunnerEnvOptions): RunnerEnvOptions {
  return typeof ref === 'string' ? { ref } : (ref ?? {});
}

/** Reads a request body (up to MAX_BODY bytes). */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new TwirpError(400, 'malformed', 'request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function blobOp(method: string, query: URLSearchParams): string {
  const comp = query.get('comp');
  if (method === 'PUT' && comp === 'block') return 'PutBlock';
  if (method === 'PUT' && comp === 'blocklist') return 'PutBlockList';
  if (method === 'PUT' && !comp) return 'PutBlob';
  if (method === 'GET' && !comp) return 'GetBlob';
  if (method === 'HEAD' && !comp) return 'GetBlobProperties';
  if (method === 'DELETE' && !comp) return 'DeleteBlob';
  return comp ? `${method} comp=${comp}` : method;
}

/**
 * Starts azurite-blob (in memory, 127.0.0.1, a port of its choosing), the blob front and the
 * Twirp service; resolves once all three answer.
 */
export async function startActionsCacheService(opts: ActionsCacheServiceOptions = {}): Promise<ActionsCacheService> {
  if (!existsSync(AZURITE_BLOB_MAIN)) throw new Error(`azurite is not installed (${AZURITE_BLOB_MAIN}); run npm install`);
  const quotaBytes = opts.quotaBytes ?? 10 * 1024 ** 3;
  const createsPerMinute = opts.createsPerMinute ?? 200;
  const lookupsPerMinute = opts.lookupsPerMinute ?? Infinity;
  const defaultBranch = opts.defaultBranch ?? 'main';
  const defaultRef = fullRef(defaultBranch);
  const repository = opts.repository ?? 'regcache-tests/repo';
  const blobHost: BlobHostMode = opts.blobHost ?? 'ip';
  const signedUrlTtlMs = opts.signedUrlTtlMs ?? 60 * 60_000;
  let latencyMs = opts.latencyMs ?? 0;
  /** When set, only these Twirp methods are delayed (and no blob request). */
  let latencyMethods: Set<string> | undefined;
  let down: DownMode | undefined = opts.down === true ? 'reset' : opts.down || undefined;

  const scratch = await tempDir('regcache-actions-cache-');
  const dir = scratch.path;
  const runnerTemp = join(dir, 'runner-temp');
  const cleanups: (() => Promise<void> | void)[] = [() => scratch.cleanup()];
  const cleanup = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  };

  try {
    // --- azurite ---------------------------------------------------------------------------
    const azuriteDir = join(dir, 'azurite');
    await mkdir(azuriteDir, { recursive: true });
    await mkdir(runnerTemp, { recursive: true });
    const azurite = await startProcess(
      process.execPath,
      [
        AZURITE_BLOB_MAIN,
        '--blobHost', '127.0.0.1',
        '--blobPort', '0',
        '--inMemoryPersistence',
        '--loose',
        '--skipApiVersionCheck',
        '--disableTelemetry',
      ],
      { name: 'azurite-blob', logFile: join(dir, 'azurite.log'), cwd: azuriteDir, env: azuriteEnv() },
    );
    cleanups.push(async () => {
      await azurite.stop(5_000);
    });
    const azuritePort = await waitFor(
      () => {
        const m = /successfully listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(azurite.log());
        return m ? Number(m[1]) : undefined;
      },
      // A readiness wait, not a bound on anything tested: azurite (a large node program) took
      // over 20 s to start on a loaded 2-core machine (with two busy loops beside the tests).
      { what: 'azurite-blob to listen', timeoutMs: 90_000, process: azurite },
    );
    const credential = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
    const admin = new BlobServiceClient(`http://127.0.0.1:${azuritePort}/${AZURITE_ACCOUNT}`, credential, {
      retryOptions: { maxTries: 1 },
    });
    const container: ContainerClient = admin.getContainerClient(CONTAINER);
    await container.createIfNotExists();

    // --- state -------------------------------------------------------------------------------
    const entries: CacheEntryRecord[] = [];
    const requests: RequestRecord[] = [];
    const issuedTokens = new Set<string>();
    const creations: number[] = [];
    const lookups: number[] = [];
    let nextId = 1000;
    const sockets = new Set<Socket>();

    function tokenFor(refOrOpts?: string | RunnerEnvOptions): string {
      const o = normalizeEnvOptions(refOrOpts);
      const ref = fullRef(o.ref ?? defaultBranch);
      const scopes: Scope[] = [{ Scope: ref, Permission: o.readOnly ? READ : READ | WRITE }];
      const pr = /^refs\/pull\/\d+\/merge$/.test(ref);
      const base = pr ? fullRef(o.baseRef ?? defaultBranch) : undefined;
      for (const s of [base, defaultRef]) {
        if (s && !scopes.some((x) => x.Scope === s)) scopes.push({ Scope: s, Permission: READ });
      }
      const now = Math.floor(Date.now() / 1000);
      const runBackendId = randomUUID();
      const header = { typ: 'JWT', alg: 'RS256', x5t: b64url(randomBytes(20)), kid: randomBytes(20).toString('hex').toUpperCase() };
      const payload = {
        nameid: 'dddddddd-dddd-dddd-dddd-dddddddddddd',
        scp: `Actions.ExampleScope Actions.Results:${runBackendId}:${randomUUID()}`,
        IdentityTypeClaim: 'System:ServiceIdentity',
        'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/sid': 'DDDDDDDD-DDDD-DDDD-DDDD-DDDDDDDDDDDD',
        'http://schemas.microsoft.com/ws/2008/06/identity/claims/primarysid': 'dddddddd-dddd-dddd-dddd-dddddddddddd',
        aui: randomUUID(),
        sid: randomUUID(),
        ac: JSON.stringify(scopes),
        acsl: '10',
        orchid: `${runBackendId}.job.__default`,
        iss: 'vstoken.actions.githubusercontent.com',
        aud: 'vstoken.actions.githubusercontent.com|vso:' + randomUUID(),
        nbf: now - 60,
        exp: now + 6 * 3600,
      };
      const token = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${b64url(randomBytes(256))}`;
      issuedTokens.add(token);
      return token;
    }

    const token = tokenFor();

    // --- blob front: forwards to azurite, records, applies latency and down ------------------
    const blobServer = createServer((req, res) => void handleBlob(req, res));
    trackSockets(blobServer);
    const blobPort = await listen(blobServer);
    cleanups.push(() => closeServer(blobServer));
    let signedUrlBase: string | undefined;
    const blobEndpoint =
      blobHost === 'azure' ? `http://${AZURITE_ACCOUNT}${AZURE_BLOB_SUFFIX}:${blobPort}` : `http://127.0.0.1:${blobPort}/${AZURITE_ACCOUNT}`;

    async function handleBlob(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const at = Date.now();
      const u = new URL(req.url ?? '/', 'http://x');
      const path = decodeURIComponent(u.pathname).replace(/^\//, '');
      const blob = blobHost === 'azure' || !path.startsWith(`${AZURITE_ACCOUNT}/`) ? path : path.slice(AZURITE_ACCOUNT.length + 1);
      const rangeHeader = req.headers['x-ms-range'] ?? req.headers.range;
      const record: BlobRequestRecord = {
        kind: 'blob',
        method: req.method ?? 'GET',
        op: blobOp(req.method ?? 'GET', u.searchParams),
        blob,
        ...(rangeHeader ? { range: String(rangeHeader) } : {}),
        at,
        ms: 0,
        status: 0,
        bytesIn: 0,
        bytesOut: 0,
      };
      requests.push(record);
      if (latencyMs > 0 && !latencyMethods) await sleep(latencyMs);
      if (down === 'reset') {
        record.outcome = 'reset';
        record.ms = Date.now() - at;
        req.socket.destroy();
        return;
      }
      if (down === 'unavailable') {
        req.resume();
        const body = '<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>The server is currently unable to receive requests. Please retry your request.</Message></Error>';
        res.writeHead(503, { 'Content-Type': 'application/xml', 'x-ms-error-code': 'ServerBusy' });
        res.end(body);
        record.status = 503;
        record.ms = Date.now() - at;
        return;
      }
      const upstream = httpRequest(
        { host: '127.0.0.1', port: azuritePort, method: req.method, path: req.url, headers: req.headers },
        (ures) => {
          record.status = ures.statusCode ?? 0;
          res.writeHead(ures.statusCode ?? 502, ures.headers);
          ures.on('data', (c: Buffer) => {
            record.bytesOut += c.length;
          });
          ures.pipe(res);
          ures.on('end', () => {
            record.ms = Date.now() - at;
          });
        },
      );
      req.on('data', (c: Buffer) => {
        record.bytesIn += c.length;
      });
      upstream.on('error', (err) => {
        record.status = 502;
        record.ms = Date.now() - at;
        if (!res.headersSent) {
          res.writeHead(502, { 'Content-Type': 'text/plain' });
          res.end(`blob front: ${err.message}`);
        } else res.destroy();
      });
      req.pipe(upstream);
    }

    // --- Twirp service ----------------------------------------------------------------------
    const twirpServer = createServer((req, res) => void handleTwirp(req, res));
    trackSockets(twirpServer);
    const twirpPort = await listen(twirpServer);
    cleanups.push(() => closeServer(twirpServer));
    const url = `http://127.0.0.1:${twirpPort}/`;

    // Down ('reset') is applied per request, after the request is read and recorded, so that the
    // request log shows every attempt a client makes while the service is down.
    function trackSockets(server: Server): void {
      server.on('connection', (socket: Socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
    }

    function sign(blobName: string, permissions: string): string {
      const sas = generateBlobSASQueryParameters(
        {
          containerName: CONTAINER,
          blobName,
          permissions: BlobSASPermissions.parse(permissions),
          startsOn: new Date(Date.now() - 5 * 60_000),
          expiresOn: new Date(Date.now() + signedUrlTtlMs),
          protocol: SASProtocol.HttpsAndHttp,
          version: SAS_VERSION,
        },
        credential,
      ).toString();
      return `${signedUrlBase ?? blobEndpoint}/${CONTAINER}/${blobName}?${sas}`;
    }

    function authorize(req: IncomingMessage): Scope[] {
      const h = req.headers.authorization ?? '';
      const m = /^Bearer\s+(\S+)$/i.exec(h);
      if (!m || !m[1]) throw new TwirpError(401, 'unauthenticated', 'missing bearer token');
      if (!issuedTokens.has(m[1])) throw new TwirpError(401, 'unauthenticated', 'invalid token');
      const scopes = tokenScopes(m[1]);
      if (!scopes) throw new TwirpError(401, 'unauthenticated', 'token has no cache scopes');
      return scopes;
    }

    function rateLimit(window: number[], limit: number): void {
      const now = Date.now();
      while (window.length > 0 && window[0]! <= now - 60_000) window.shift();
      if (window.length >= limit) {
        const retryAfter = Math.max(1, Math.ceil((window[0]! + 60_000 - now) / 1000));
        throw new TwirpError(429, 'resource_exhausted', 'rate limit exceeded', { 'Retry-After': String(retryAfter) });
      }
    }

    function str(body: Record<string, unknown>, field: string, required = true): string {
      const v = body[field];
      if (v === undefined && !required) return '';
      if (typeof v !== 'string' || (required && v === '')) throw new TwirpError(400, 'invalid_argument', `${field} is required`);
      return v;
    }

    function checkKey(key: string): void {
      if (key.length > 512) throw new TwirpError(400, 'invalid_argument', 'key cannot be longer than 512 characters');
      if (key.includes(',')) throw new TwirpError(400, 'invalid_argument', 'key cannot contain commas');
    }

    async function createCacheEntry(scopes: Scope[], body: Record<string, unknown>): Promise<object> {
      const key = str(body, 'key');
      const version = str(body, 'version');
      checkKey(key);
      const writable = scopes.find((s) => (s.Permission & WRITE) !== 0);
      if (!writable) return { ok: false, signed_upload_url: '', message: 'cache write denied: token has no writable scopes' };
      rateLimit(creations, createsPerMinute);
      const scope = writable.Scope;
      if (entries.some((e) => e.state !== 'evicted' && e.scope === scope && e.key === key && e.version === version)) {
        throw new TwirpError(409, 'already_exists', 'cache entry with the same key, version, and scope already exists');
      }
      creations.push(Date.now());
      const id = nextId++;
      const now = Date.now();
      const entry: CacheEntryRecord = { id, key, version, scope, state: 'reserved', createdAt: now, lastAccessedAt: now, hits: 0, blobName: `${id}` };
      entries.push(entry);
      return { ok: true, signed_upload_url: sign(entry.blobName, 'cw'), message: '' };
    }

    async function finalizeCacheEntryUpload(scopes: Scope[], body: Record<string, unknown>): Promise<object> {
      const key = str(body, 'key');
      const version = str(body, 'version');
      const reported = Number(body.size_bytes ?? 0);
      const writable = scopes.find((s) => (s.Permission & WRITE) !== 0);
      if (!writable) return { ok: false, entry_id: '0', message: 'cache write denied: token has no writable scopes' };
      const entry = entries.find((e) => e.scope === writable.Scope && e.key === key && e.version === version && e.state !== 'evicted');
      if (!entry) throw new TwirpError(404, 'not_found', 'cache entry not found');
      if (entry.state === 'finalized') throw new TwirpError(409, 'already_exists', 'cache entry is already finalized');
      let size: number;
      try {
        size = (await container.getBlockBlobClient(entry.blobName).getProperties()).contentLength ?? 0;
      } catch {
        throw new TwirpError(412, 'failed_precondition', 'cache entry has not been uploaded');
      }
      entry.state = 'finalized';
      entry.finalizedAt = Date.now();
      entry.sizeBytes = size;
      entry.reportedSizeBytes = reported;
      await enforceQuota(entry);
      return { ok: true, entry_id: String(entry.id), message: '' };
    }

    async function enforceQuota(keep: CacheEntryRecord): Promise<void> {
      const live = () => entries.filter((e) => e.state === 'finalized');
      let used = live().reduce((n, e) => n + (e.sizeBytes ?? 0), 0);
      while (used > quotaBytes) {
        const victim = live()
          .filter((e) => e !== keep)
          .sort((a, b) => a.lastAccessedAt - b.lastAccessedAt || a.id - b.id)[0];
        if (!victim) break;
        await evictEntry(victim, 'quota');
        used -= victim.sizeBytes ?? 0;
      }
    }

    async function evictEntry(e: CacheEntryRecord, by: 'quota' | 'manual'): Promise<void> {
      e.state = 'evicted';
      e.evictedAt = Date.now();
      e.evictedBy = by;
      await container.getBlockBlobClient(e.blobName).deleteIfExists();
    }

    function findEntry(scopes: Scope[], key: string, restoreKeys: string[], version: string): CacheEntryRecord | undefined {
      for (const s of scopes) {
        if ((s.Permission & READ) === 0) continue;
        const candidates = entries
          .filter((e) => e.state === 'finalized' && e.scope === s.Scope && e.version === version)
          .sort((a, b) => b.id - a.id); // newest first
        for (const k of [key, ...restoreKeys]) {
          const hit = candidates.find((e) => e.key === k) ?? candidates.find((e) => e.key.startsWith(k));
          if (hit) return hit;
        }
      }
      return undefined;
    }

    async function getCacheEntryDownloadURL(scopes: Scope[], body: Record<string, unknown>): Promise<object> {
      const key = str(body, 'key');
      const version = str(body, 'version');
      const restoreKeys = body.restore_keys === undefined ? [] : body.restore_keys;
      if (!Array.isArray(restoreKeys) || !restoreKeys.every((k) => typeof k === 'string')) {
        throw new TwirpError(400, 'invalid_argument', 'restore_keys must be a list of strings');
      }
      for (const k of [key, ...restoreKeys]) checkKey(k);
      if (!scopes.some((s) => (s.Permission & READ) !== 0)) {
        throw new TwirpError(403, 'permission_denied', 'cache read denied: token has no readable scopes');
      }
      rateLimit(lookups, lookupsPerMinute);
      lookups.push(Date.now());
      const entry = findEntry(scopes, key, restoreKeys as string[], version);
      if (!entry) return { ok: false, signed_download_url: '', matched_key: '' };
      entry.lastAccessedAt = Date.now();
      entry.hits++;
      return { ok: true, signed_download_url: sign(entry.blobName, 'r'), matched_key: entry.key };
    }

    async function handleTwirp(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const at = Date.now();
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const method = path.startsWith(TWIRP_PREFIX) ? path.slice(TWIRP_PREFIX.length) : path;
      const record: TwirpRequestRecord = { kind: 'twirp', method, at, ms: 0, status: 0, request: undefined, response: undefined };
      requests.push(record);
      let status = 200;
      let payload: unknown;
      let headers: Record<string, string> = {};
      try {
        const raw = await readBody(req);
        try {
          record.request = raw.length > 0 ? JSON.parse(raw.toString('utf8')) : undefined;
        } catch {
          record.request = raw.toString('utf8');
        }
        if (latencyMs > 0 && (!latencyMethods || latencyMethods.has(method))) await sleep(latencyMs);
        if (down === 'reset') {
          record.outcome = 'reset';
          record.ms = Date.now() - at;
          req.socket.destroy();
          return;
        }
        if (down === 'unavailable') throw new TwirpError(503, 'unavailable', 'the cache service is unavailable');
        if (req.method !== 'POST') throw new TwirpError(404, 'bad_route', `unsupported method ${req.method} (only POST)`);
        if (!path.startsWith(TWIRP_PREFIX)) throw new TwirpError(404, 'bad_route', `no handler for path ${path}`);
        const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (ct !== 'application/json') throw new TwirpError(400, 'malformed', `unexpected Content-Type "${ct}": this stand-in speaks Twirp JSON only`);
        const body = record.request;
        if (!body || typeof body !== 'object' || Array.isArray(body)) throw new TwirpError(400, 'malformed', 'the request body is not a JSON object');
        const scopes = authorize(req);
        record.ref = scopes[0]?.Scope;
        const b = body as Record<string, unknown>;
        switch (method) {
          case 'CreateCacheEntry':
            payload = await createCacheEntry(scopes, b);
            break;
          case 'FinalizeCacheEntryUpload':
            payload = await finalizeCacheEntryUpload(scopes, b);
            break;
          case 'GetCacheEntryDownloadURL':
            payload = await getCacheEntryDownloadURL(scopes, b);
            break;
          default:
            throw new TwirpError(404, 'bad_route', `no handler for path ${path}`);
        }
      } catch (err) {
        const e = err instanceof TwirpError ? err : new TwirpError(500, 'internal', err instanceof Error ? err.message : String(err));
        status = e.status;
        payload = { code: e.code, msg: e.message };
        headers = e.headers;
        record.code = e.code;
        if (e.headers['Retry-After']) record.retryAfter = Number(e.headers['Retry-After']);
      }
      record.status = status;
      record.response = payload;
      record.ms = Date.now() - at;
      const text = JSON.stringify(payload);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
      res.end(text);
    }

    // --- the handle ---------------------------------------------------------------------------
    function env(refOrOpts?: string | RunnerEnvOptions): Record<string, string> {
      const o = normalizeEnvOptions(refOrOpts);
      const ref = fullRef(o.ref ?? defaultBranch);
      const pr = /^refs\/pull\/(\d+)\/merge$/.exec(ref);
      const vars: Record<string, string> = {
        ACTIONS_CACHE_SERVICE_V2: 'True',
        ACTIONS_RESULTS_URL: url,
        ACTIONS_CACHE_URL: url,
        ACTIONS_RUNTIME_TOKEN: tokenFor(o),
        GITHUB_ACTIONS: 'true',
        GITHUB_SERVER_URL: 'https://github.com',
        GITHUB_API_URL: 'https://api.github.com',
        GITHUB_REPOSITORY: repository,
        GITHUB_REPOSITORY_OWNER: repository.split('/')[0] ?? repository,
        GITHUB_REF: ref,
        GITHUB_REF_NAME: pr ? `${pr[1]}/merge` : shortName(ref),
        GITHUB_REF_TYPE: ref.startsWith('refs/tags/') ? 'tag' : 'branch',
        GITHUB_EVENT_NAME: pr ? 'pull_request' : 'push',
        GITHUB_BASE_REF: pr ? shortName(fullRef(o.baseRef ?? defaultBranch)) : '',
        GITHUB_HEAD_REF: pr ? 'pr-head' : '',
        GITHUB_RUN_ID: String(o.runId ?? 1000),
        GITHUB_RUN_ATTEMPT: String(o.runAttempt ?? 1),
        GITHUB_JOB: o.job ?? 'build',
        RUNNER_OS: 'Linux',
        RUNNER_ARCH: process.arch === 'arm64' ? 'ARM64' : 'X64',
        RUNNER_TEMP: o.runnerTemp ?? runnerTemp,
        NO_PROXY: [process.env.NO_PROXY ?? process.env.no_proxy, '127.0.0.1', 'localhost', AZURE_BLOB_SUFFIX].filter(Boolean).join(','),
      };
      vars.no_proxy = vars.NO_PROXY!;
      if (o.workspace) vars.GITHUB_WORKSPACE = o.workspace;
      if (o.cacheMode !== undefined) vars.ACTIONS_CACHE_MODE = o.cacheMode;
      if (blobHost === 'azure') vars.NODE_OPTIONS = [process.env.NODE_OPTIONS, DNS_PRELOAD].filter(Boolean).join(' ');
      return vars;
    }

    function processEnv(refOrOpts?: string | RunnerEnvOptions, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
      const clean: NodeJS.ProcessEnv = {};
      for (const [k, v] of Object.entries(base)) {
        if (/^(ACTIONS_|GITHUB_|RUNNER_|CACHE_UPLOAD_|SEGMENT_DOWNLOAD_TIMEOUT_MINS$|(HTTPS?|ALL|NO)_PROXY$)/i.test(k)) continue;
        clean[k] = v;
      }
      return { ...clean, ...env(refOrOpts) };
    }

    function matching(key: string, filter: EntryFilter = {}): CacheEntryRecord[] {
      return entries.filter(
        (e) =>
          e.state === 'finalized' &&
          e.key === key &&
          (filter.version === undefined || e.version === filter.version) &&
          (filter.scope === undefined || e.scope === fullRef(filter.scope)),
      );
    }

    let stopping: Promise<void> | undefined;
    return {
      url,
      token,
      blobEndpoint,
      defaultBranch,
      azurite,
      tokenFor,
      env,
      processEnv,
      records: () => ({ entries: entries.map((e) => ({ ...e })), requests: requests.map((r) => ({ ...r })) }),
      setDown(d) {
        down = d === true ? 'reset' : d || undefined;
        if (down === 'reset') for (const s of sockets) s.destroy();
      },
      setSignedUrlBase(base) {
        signedUrlBase = base;
      },
      setLatency(ms, twirpMethods) {
        latencyMs = ms;
        latencyMethods = twirpMethods ? new Set(twirpMethods) : undefined;
      },
      async evict(key, filter) {
        const victims = matching(key, filter);
        for (const e of victims) await evictEntry(e, 'manual');
        return victims.map((e) => ({ ...e }));
      },
      async tamper(key, filter = {}) {
        const entry = matching(key, filter).sort((a, b) => b.id - a.id)[0];
        if (!entry) throw new Error(`tamper: no finalized entry with key ${key}`);
        const blob = container.getBlockBlobClient(entry.blobName);
        const data = await blob.downloadToBuffer();
        if (data.length === 0) throw new Error(`tamper: entry ${key} is empty`);
        const length = Math.min(filter.length ?? 64, data.length);
        const offset = Math.min(filter.offset ?? Math.floor((data.length - length) / 2), data.length - length);
        for (let i = offset; i < offset + length; i++) data[i] = data[i]! ^ 0xff;
        await blob.uploadData(data);
        entry.tampered = true;
        return { ...entry };
      },
      stop() {
        stopping ??= (async () => {
          for (const s of sockets) s.destroy();
          await cleanup();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Azurite's environment: no proxies, no SQL backend (AZURITE_DB), nothing from a runner. */
function azuriteEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(ACTIONS_|GITHUB_|AZURITE_|(HTTPS?|ALL|NO)_PROXY$|NODE_OPTIONS$)/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      if (a === null || typeof a === 'string') reject(new Error('no TCP address'));
      else resolve(a.port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
