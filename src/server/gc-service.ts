// Garbage collection of a running server's storage. The server collects through the storage's
// lifetime owner, so a collection runs beside pushes, pulls and eviction (see
// src/storage/blob-lifetime.ts): periodically (`--gc-interval`, off by default), and when
// `regcache gc` is run against a storage the server holds. `regcache gc` finds the storage
// locked and asks the server over a Unix socket in the storage directory (`gc.sock`): one JSON
// line each way. The socket is as private as the storage itself (mode 0600, in a directory
// only its owner may write): whoever may connect may delete the blobs anyway. It is removed
// on close; a stale one (a kill -9) is replaced at the next start, which holds the lock.
import { chmod, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { GcOptions, GcResult, Storage } from '../storage/index.js';

/** Longest Unix socket path Linux and macOS accept (sun_path, with its NUL). */
const MAX_SOCKET_PATH = 103;

/** A request to collect, as `regcache gc` sends it. */
export interface GcRequest {
  gracePeriodMs?: number;
  dryRun?: boolean;
  uploadMaxAgeMs?: number;
}

/** What the server answers. */
export type GcAnswer = { ok: true; pid: number; result: GcResult } | { ok: false; error: string };

/** Options of {@link startGcService}. */
export interface GcServiceOptions {
  /** Collect every this many milliseconds (undefined: only when asked). */
  intervalMs?: number;
  /** Grace period of the periodic collections. */
  graceMs?: number;
  /** Upload sessions idle longer than this are removed by the periodic collections. */
  uploadMaxAgeMs?: number;
  /** Where the service tells what it did. */
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/** Serves gc requests on the storage's socket and collects periodically; returns the stopper. */
export async function startGcService(storage: Storage, o: GcServiceOptions): Promise<() => Promise<void>> {
  let queue: Promise<unknown> = Promise.resolve();
  /** Collections run one at a time. */
  const collect = (opts: GcOptions): Promise<GcResult> => {
    const run = queue.then(() => storage.gc(opts));
    queue = run.catch(() => {});
    return run;
  };
  const server = await listenOnSocket(storage.layout.gcSocket, (socket) => answer(socket, collect), o.log);
  let timer: NodeJS.Timeout | undefined;
  let periodic: Promise<unknown> = Promise.resolve();
  if (o.intervalMs !== undefined && o.intervalMs > 0) {
    let busy = false;
    timer = setInterval(() => {
      if (busy) return;
      busy = true;
      const opts: GcOptions = { ...(o.graceMs !== undefined ? { gracePeriodMs: o.graceMs } : {}), ...(o.uploadMaxAgeMs !== undefined ? { uploadMaxAgeMs: o.uploadMaxAgeMs } : {}) };
      periodic = collect(opts).then(
        (r) => o.log.info({ gc: summary(r) }, 'periodic garbage collection'),
        (err: unknown) => o.log.warn({ err }, 'periodic garbage collection failed'),
      ).finally(() => (busy = false));
    }, o.intervalMs);
    timer.unref();
  }
  return async () => {
    if (timer) clearInterval(timer);
    if (server) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await unlink(storage.layout.gcSocket).catch(() => {});
    }
    await periodic;
    await queue;
  };
}

/** The counts of a result, for a log line. */
function summary(r: GcResult): object {
  const { uploads, ...counts } = r;
  return { ...counts, uploads: uploads.length, uploadsRemoved: uploads.filter((u) => u.removed).length };
}

async function listenOnSocket(path: string, onConnection: (s: Socket) => void, log: GcServiceOptions['log']): Promise<Server | undefined> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    log.warn({ path }, '`regcache gc` cannot reach this server: the storage path is too long for a Unix socket');
    return undefined;
  }
  // Left by a server that was killed: this process holds the storage lock now.
  await unlink(path).catch(() => {});
  const server = createServer(onConnection);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    await chmod(path, 0o600);
  } catch (err) {
    log.warn({ err, path }, '`regcache gc` cannot reach this server: its socket could not be opened');
    server.close();
    return undefined;
  }
  server.unref();
  return server;
}

/** Reads one request line, collects, answers one line. */
function answer(socket: Socket, collect: (o: GcOptions) => Promise<GcResult>): void {
  let text = '';
  socket.setEncoding('utf8');
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: string) => {
    text += chunk;
    if (text.length > 4096) return void socket.destroy();
    const end = text.indexOf('\n');
    if (end < 0) return;
    socket.removeAllListeners('data');
    let request: GcRequest;
    try {
      request = parseRequest(text.slice(0, end));
    } catch (err) {
      return void socket.end(`${JSON.stringify({ ok: false, error: (err as Error).message } satisfies GcAnswer)}\n`);
    }
    collect(request).then(
      (result) => socket.end(`${JSON.stringify({ ok: true, pid: process.pid, result } satisfies GcAnswer)}\n`),
      (err: unknown) => socket.end(`${JSON.stringify({ ok: false, error: (err as Error).message ?? String(err) } satisfies GcAnswer)}\n`),
    );
  });
}

function parseRequest(line: string): GcOptions {
  const r = JSON.parse(line) as Record<string, unknown>;
  const ms = (v: unknown, name: string) => {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !(v >= 0)) throw new Error(`${name} must be a number of milliseconds`);
    return v;
  };
  const grace = ms(r.gracePeriodMs, 'gracePeriodMs');
  const uploadMaxAge = ms(r.uploadMaxAgeMs, 'uploadMaxAgeMs');
  return { dryRun: r.dryRun === true, ...(grace !== undefined ? { gracePeriodMs: grace } : {}), ...(uploadMaxAge !== undefined ? { uploadMaxAgeMs: uploadMaxAge } : {}) };
}

/**
 * Asks the server holding the storage whose gc socket is `path` to collect. Rejects with the
 * connection's error (ENOENT, ECONNREFUSED: no server listens there) or the server's refusal.
 */
export function askServerToCollect(path: string, request: GcRequest): Promise<{ pid: number; result: GcResult }> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        const a = JSON.parse(text) as GcAnswer;
        if (a.ok) resolve({ pid: a.pid, result: a.result });
        else reject(new Error(`the server refused: ${a.error}`));
      } catch {
        reject(new Error('the server gave no answer'));
      }
    });
  });
}
