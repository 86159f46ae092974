// regcache itself for end-to-end tests: in process (startServer on 127.0.0.1:0 over a temp
// storage dir, with a record of every request the registry port answered) or as the CLI
// process (`node dist/cli.js serve --ready-file`), plus the small HTTP and skopeo calls the
// e2e/registry-* tests share. Set REGCACHE_E2E_LOG=info (or debug) to see the server's log.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { type Dispatcher, request } from 'undici';
import { type RunningServer, type ServerOptions, startServer } from '../../src/server/index.js';
import { type ChildHandle, type ExitInfo, type RunOptions, type RunResult, run, startProcess, tempDir, waitFor } from './proc.js';
import { privateToolEnv, toolPath } from './tools.js';

/** One request the registry port answered. */
export interface RecordedRequest {
  method: string;
  /** Path and query as the client sent them. */
  url: string;
  status: number;
  /** False when the connection closed before the whole response was written. */
  finished: boolean;
  headers: IncomingHttpHeaders;
}

/** A regcache server started by startRegcache. */
export interface Regcache {
  /** Registry port base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** `127.0.0.1:<port>` as used in image references. */
  readonly host: string;
  readonly cacheUrl: string;
  /** The storage root (a temp dir removed by close()). */
  readonly storage: string;
  readonly server: RunningServer;
  /** Requests the registry port has answered so far, oldest first. */
  readonly requests: RecordedRequest[];
  /** Closes the server and removes its storage. Idempotent. */
  close(): Promise<void>;
}

/** Options of startRegcache: startServer's, with storage and addresses defaulted. */
export type RegcacheOptions = Partial<ServerOptions>;

/** Log level of servers started here: silent unless REGCACHE_E2E_LOG says otherwise. */
function e2eLogLevel(): string {
  return process.env.REGCACHE_E2E_LOG || 'silent';
}

/**
 * Starts regcache in this process on 127.0.0.1:0 (both ports) over a fresh temp storage dir.
 * Pass a TestContext (or anything with after()) to close it after the test.
 */
export async function startRegcache(opts: RegcacheOptions = {}, t?: { after(fn: () => Promise<void>): void }): Promise<Regcache> {
  const dir = opts.storage === undefined ? await tempDir('rc-e2e-storage-') : undefined;
  const storage = opts.storage ?? join(dir!.path, 'storage');
  let server: RunningServer;
  try {
    server = await startServer({
      registryAddr: '127.0.0.1:0',
      cacheAddr: '127.0.0.1:0',
      logLevel: e2eLogLevel(),
      ...opts,
      storage,
    });
  } catch (err) {
    await dir?.cleanup();
    throw err;
  }
  const requests: RecordedRequest[] = [];
  // An extra 'request' listener only observes: fastify's own listener answers. 'close' rather
  // than 'finish': a client that has read Content-Length bytes may hang up before a streamed
  // body's end was written, and then 'finish' never comes.
  server.registryApp.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    res.once('close', () => requests.push({
      method: req.method ?? '',
      url: unrewritten(req.url ?? ''),
      status: res.statusCode,
      finished: res.writableFinished,
      headers: req.headers,
    }));
  });
  const url = server.registryUrl;
  let closing: Promise<void> | undefined;
  const rc: Regcache = {
    url,
    host: new URL(url).host,
    cacheUrl: server.cacheUrl,
    storage,
    server,
    requests,
    close: () => (closing ??= (async () => {
      await server.close();
      await dir?.cleanup();
    })()),
  };
  t?.after(() => rc.close());
  return rc;
}

/**
 * The URL as the client sent it: fastify's rewriteUrl encodes the slashes of repository names
 * as %2F in req.url. A repository name holds no '%', so decoding the path part is exact.
 */
function unrewritten(url: string): string {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return path.replace(/%2F/gi, '/') + (q === -1 ? '' : url.slice(q));
}

/** What `regcache serve --ready-file` wrote. */
export interface ReadyInfo {
  registry: string;
  cache: string;
  pid: number;
  storage: string;
}

/** regcache running as the CLI process. */
export interface RegcacheProcess {
  readonly url: string;
  readonly host: string;
  readonly ready: ReadyInfo;
  readonly child: ChildHandle;
  /** SIGTERM (drain, exit 0), SIGKILL after 10 s; resolves with how it ended. */
  stop(): Promise<ExitInfo>;
}

/** The built CLI the package's `bin` points at. */
export const DIST_CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

/**
 * Runs `node dist/cli.js serve` with `args` (e.g. --tls-cert), storage and log under `dir`,
 * both ports on 127.0.0.1:0 unless args say otherwise, and waits for its ready file.
 */
export async function startRegcacheProcess(dir: string, args: readonly string[] = []): Promise<RegcacheProcess> {
  if (!existsSync(DIST_CLI)) throw new Error(`${DIST_CLI} is missing: run npm run build`);
  const readyFile = join(dir, 'ready.json');
  const has = (flag: string) => args.includes(flag);
  const argv = [
    DIST_CLI,
    'serve',
    ...(has('--registry-addr') ? [] : ['--registry-addr', '127.0.0.1:0']),
    ...(has('--cache-addr') ? [] : ['--cache-addr', '127.0.0.1:0']),
    ...(has('--storage') ? [] : ['--storage', join(dir, 'storage')]),
    ...(has('--log-level') ? [] : ['--log-level', process.env.REGCACHE_E2E_LOG || 'warn']),
    '--ready-file',
    readyFile,
    ...args,
  ];
  const child = await startProcess(process.execPath, argv, { name: 'regcache', logFile: join(dir, 'regcache.log') });
  try {
    const ready = await waitFor(async () => JSON.parse(await readFile(readyFile, 'utf8')) as ReadyInfo, {
      process: child,
      what: `regcache to write ${readyFile}`,
      timeoutMs: 20_000,
    });
    return { url: ready.registry, host: new URL(ready.registry).host, ready, child, stop: () => child.stop(10_000) };
  } catch (err) {
    await child.stop(5_000);
    throw err;
  }
}

/** Every manifest media type a client may ask for. */
export const ACCEPT_MANIFESTS = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** Options of the HTTP helpers below. */
export interface HttpOptions {
  /** Extra request headers (e.g. authorization). */
  headers?: Record<string, string>;
  /** An undici Agent, e.g. one that trusts a test CA. */
  dispatcher?: Dispatcher;
}

/** The answer of httpRequest, body read as text. */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One HTTP request with undici; the body is read completely. */
export async function httpRequest(method: Dispatcher.HttpMethod, url: string, opts: HttpOptions & { body?: Buffer | string } = {}): Promise<HttpAnswer> {
  const res = await request(url, { method, headers: opts.headers, body: opts.body, dispatcher: opts.dispatcher });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** GET `<base>/v2/<name>/tags/list`; throws unless 200. */
export async function listTags(base: string, name: string, opts: HttpOptions = {}): Promise<string[]> {
  const r = await httpRequest('GET', `${base}/v2/${name}/tags/list`, opts);
  if (r.status !== 200) throw new Error(`tags/list of ${name}: ${r.status} ${r.text}`);
  return (JSON.parse(r.text) as { tags: string[] | null }).tags ?? [];
}

/** HEAD a manifest (accepting every manifest type): status, Docker-Content-Digest and Content-Type. */
export async function headManifest(base: string, name: string, reference: string, opts: HttpOptions = {}): Promise<{ status: number; digest?: string; mediaType?: string }> {
  const r = await httpRequest('HEAD', `${base}/v2/${name}/manifests/${reference}`, {
    ...opts,
    headers: { accept: ACCEPT_MANIFESTS, ...opts.headers },
  });
  const header = (h: string) => (typeof r.headers[h] === 'string' ? (r.headers[h] as string) : undefined);
  return { status: r.status, digest: header('docker-content-digest'), mediaType: header('content-type') };
}

/** Runs skopeo with its state (auth file, blob-info cache) in `home`, needing no policy.json. */
export function skopeo(home: string, args: readonly string[], opts: Omit<RunOptions, 'env'> = {}): Promise<RunResult> {
  return run(toolPath('skopeo'), ['--insecure-policy', ...args], { ...opts, env: privateToolEnv(home) });
}

/** The OCI/Go architecture name of this machine (amd64, arm64, ...). */
export function hostArchitecture(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return map[process.arch] ?? process.arch;
}
