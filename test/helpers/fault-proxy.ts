// A small fault-injecting HTTP proxy for the pull-through cache's fault tests: it listens on
// 127.0.0.1:0 in front of a real upstream (Debian's distribution) and, per request, applies
// the first rule whose path regex (and method) matches: pass the response through, reset the
// TCP connection after N body bytes, truncate the body (a clean close while Content-Length
// promises more), replace body bytes (same length, so only the digest can tell), delay or
// throttle the response (a slow upstream), answer with other bytes (another manifest for the
// one asked for by digest), or answer a status itself (429 with Retry-After,
// 503) without asking the upstream. Rules can be replaced while it runs; every request is
// logged with the rule applied and every rule's hits are counted, so tests can prove how
// often the cache went upstream. Also here: pushBlob, to seed the upstream with test blobs.
import { createHash } from 'node:crypto';
import { Agent, type IncomingHttpHeaders, get as httpGet, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

/** What the proxy does to a matching request. */
export type Fault =
  /** Forward the request and stream the upstream's answer back unchanged (plus `headers`, e.g. Docker Hub's ratelimit-*). */
  | { kind: 'pass'; headers?: Record<string, string> }
  /** Forward; send the headers and the first `afterBytes` body bytes (0: the headers only), then reset the TCP connection (RST). */
  | { kind: 'reset'; afterBytes: number }
  /** Forward; send the headers and the first `afterBytes` body bytes, then close cleanly (FIN) though Content-Length promises more. */
  | { kind: 'truncate'; afterBytes: number }
  /**
   * Forward; invert `length` body bytes (default 1) from `offset` (default 0; negative counts
   * from the end of the body as Content-Length announces it). Same length, wrong content.
   */
  | { kind: 'corrupt'; offset?: number; length?: number }
  /**
   * Forward; send the upstream's status and headers (Docker-Content-Digest included) with
   * `body` instead of its body (Content-Length adjusted): an upstream that answers a request
   * with other content, e.g. another manifest for a manifest asked for by digest.
   */
  | { kind: 'replace'; body: Buffer }
  /** Forward; wait `firstByteDelayMs` (default 0) before the headers, then send the body at `bytesPerSecond`. */
  | { kind: 'throttle'; bytesPerSecond: number; firstByteDelayMs?: number }
  /** Wait `ms` before forwarding, then pass (a slow-to-answer upstream). */
  | { kind: 'delay'; ms: number }
  /** Answer `status` without asking the upstream, with a Retry-After header when given. */
  | { kind: 'status'; status: number; retryAfter?: string; body?: string };

/** One rule: which requests it applies to, and what it does. */
export interface FaultRule {
  /** Name for hits() and the request log; default `rule<index>`. */
  name?: string;
  /** Tested against the request target (path and query), e.g. `/\/blobs\/sha256:/`. */
  match: RegExp;
  /** Only requests with this method (e.g. 'GET'); default any. */
  method?: string;
  /** Applies to the first `times` matching requests only, then is skipped; default unlimited. */
  times?: number;
  fault: Fault;
}

/** How a proxied response ended. */
export type Outcome = 'pending' | 'complete' | 'reset' | 'truncated' | 'answered' | 'client-aborted' | 'upstream-error';

/** One request the proxy received. */
export interface ProxiedRequest {
  method: string;
  /** Path and query as the client sent them. */
  url: string;
  /** Name of the rule applied, or undefined when none matched (passed through). */
  rule: string | undefined;
  fault: Fault['kind'];
  /** Status sent to the client (0 until headers are sent). */
  status: number;
  /** Body bytes sent to the client. */
  bodyBytes: number;
  outcome: Outcome;
  /** When the request arrived and when its response ended (ms since the epoch). */
  startedAt: number;
  finishedAt?: number;
}

/** A running fault proxy. */
export interface FaultProxy {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly port: number;
  /** Every request received, oldest first (entries are updated as responses progress). */
  readonly requests: readonly ProxiedRequest[];
  /** Replaces the rules (a rule's `times` budget starts afresh); hit counts are kept. */
  setRules(rules: readonly FaultRule[]): void;
  /** Requests the rule named `name` was applied to, since start. */
  hits(name: string): number;
  /** Requests received whose method (if given) and target match. */
  count(filter?: { method?: string; match?: RegExp }): number;
  /** Stops listening, cuts open connections, and resolves when closed. Idempotent. */
  close(): Promise<void>;
}

interface ActiveRule {
  rule: FaultRule;
  name: string;
  used: number;
}

/** Headers that describe one hop's connection, never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

/** Starts a fault proxy in front of `upstreamUrl` (e.g. a distribution's url) with `rules`. */
export async function startFaultProxy(upstreamUrl: string, rules: readonly FaultRule[] = []): Promise<FaultProxy> {
  const upstream = new URL(upstreamUrl);
  const agent = new Agent({ keepAlive: true });
  const log: ProxiedRequest[] = [];
  const hitCounts = new Map<string, number>();
  let active: ActiveRule[] = [];
  const setRules = (next: readonly FaultRule[]) => {
    active = next.map((rule, i) => ({ rule, name: rule.name ?? `rule${i}`, used: 0 }));
  };
  setRules(rules);

  const pick = (method: string, url: string): ActiveRule | undefined => {
    const found = active.find((a) => (a.rule.method === undefined || a.rule.method === method) && a.rule.match.test(url) && (a.rule.times === undefined || a.used < a.rule.times));
    if (found) {
      found.used++;
      hitCounts.set(found.name, (hitCounts.get(found.name) ?? 0) + 1);
    }
    return found;
  };

  const server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const chosen = pick(method, url);
    const fault: Fault = chosen?.rule.fault ?? { kind: 'pass' };
    const entry: ProxiedRequest = { method, url, rule: chosen?.name, fault: fault.kind, status: 0, bodyBytes: 0, outcome: 'pending', startedAt: Date.now() };
    log.push(entry);
    res.on('close', () => {
      if (entry.outcome === 'pending') entry.outcome = res.writableFinished ? 'complete' : 'client-aborted';
      entry.finishedAt ??= Date.now();
    });
    res.on('error', () => {});
    req.on('error', () => {});
    handle(req, res, fault, entry, { upstream, agent }).catch(() => {
      if (entry.outcome === 'pending') entry.outcome = 'upstream-error';
      res.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;

  return {
    url,
    port,
    requests: log,
    setRules,
    hits: (name) => hitCounts.get(name) ?? 0,
    count: (filter = {}) => log.filter((r) => (filter.method === undefined || r.method === filter.method) && (filter.match === undefined || filter.match.test(r.url))).length,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      })),
  };
}

interface Upstream {
  upstream: URL;
  agent: Agent;
}

/** Serves one request according to `fault`. */
async function handle(req: IncomingMessage, res: ServerResponse, fault: Fault, entry: ProxiedRequest, up: Upstream): Promise<void> {
  if (fault.kind === 'status') return answer(req, res, fault, entry);
  if (fault.kind === 'delay') await sleep(fault.ms);
  if (fault.kind === 'throttle' && fault.firstByteDelayMs) await sleep(fault.firstByteDelayMs);
  const upRes = await forward(req, res, up);
  if (upRes === undefined) {
    entry.outcome = 'client-aborted';
    return;
  }
  res.on('close', () => upRes.destroy());
  const headers = { ...responseHeaders(upRes.headers, up.upstream, req), ...(fault.kind === 'pass' ? fault.headers : {}) };
  entry.status = upRes.statusCode ?? 502;
  if (fault.kind === 'replace') return replaceBody(req, res, upRes, headers, fault.body, entry);
  res.writeHead(entry.status, headers);
  const noBody = req.method === 'HEAD' || entry.status === 204 || entry.status === 304;
  if (noBody) {
    upRes.resume();
    res.end();
    entry.outcome = 'complete';
    return;
  }
  await pump(upRes, res, fault, entry, Number(upRes.headers['content-length']));
}

/** Sends the request upstream; resolves with its response, or undefined if the client went away. */
function forward(req: IncomingMessage, res: ServerResponse, up: Upstream): Promise<IncomingMessage | undefined> {
  return new Promise((resolve, reject) => {
    const headers: OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    headers.host = up.upstream.host;
    const upReq = httpRequest({ host: up.upstream.hostname, port: up.upstream.port, method: req.method, path: req.url, headers, agent: up.agent }, resolve);
    upReq.on('error', reject);
    res.on('close', () => {
      if (!res.headersSent) {
        upReq.destroy();
        resolve(undefined);
      }
    });
    req.pipe(upReq);
  });
}

/** The upstream's response headers for the client: hop-by-hop ones dropped, Location pointed back here. */
function responseHeaders(h: IncomingHttpHeaders, upstream: URL, req: IncomingMessage): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
  const location = out.location;
  if (typeof location === 'string' && location.startsWith(upstream.origin)) {
    out.location = `http://${req.headers.host ?? ''}${location.slice(upstream.origin.length)}`;
  }
  return out;
}

/** Sends the upstream's status and headers with `body` in place of its body. */
function replaceBody(req: IncomingMessage, res: ServerResponse, upRes: IncomingMessage, headers: OutgoingHttpHeaders, body: Buffer, entry: ProxiedRequest): void {
  upRes.resume();
  headers['content-length'] = String(body.byteLength);
  res.writeHead(entry.status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
  entry.outcome = 'complete';
  entry.bodyBytes = req.method === 'HEAD' ? 0 : body.byteLength;
}

/** Answers a `status` fault directly, with an OCI error envelope as body. */
function answer(req: IncomingMessage, res: ServerResponse, fault: Extract<Fault, { kind: 'status' }>, entry: ProxiedRequest): void {
  req.resume();
  const code = fault.status === 429 ? 'TOOMANYREQUESTS' : fault.status >= 500 ? 'UNAVAILABLE' : 'UNKNOWN';
  const body = Buffer.from(fault.body ?? JSON.stringify({ errors: [{ code, message: 'injected by the fault proxy' }] }));
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/json', 'content-length': body.length };
  if (fault.retryAfter !== undefined) headers['retry-after'] = fault.retryAfter;
  entry.status = fault.status;
  res.writeHead(fault.status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
  entry.outcome = 'answered';
  entry.bodyBytes = req.method === 'HEAD' ? 0 : body.length;
}

/** Streams the upstream body to the client, applying the fault; honours backpressure. */
async function pump(upRes: IncomingMessage, res: ServerResponse, fault: Fault, entry: ProxiedRequest, announced: number): Promise<void> {
  const cutAt = fault.kind === 'reset' || fault.kind === 'truncate' ? Math.max(0, fault.afterBytes) : undefined;
  if (cutAt === 0) {
    res.flushHeaders();
    await drained(res.socket as Socket | null);
    return cut(res, upRes, fault, entry);
  }
  const started = Date.now();
  for await (const raw of upRes) {
    let chunk = raw as Buffer;
    if (fault.kind === 'corrupt') chunk = corrupt(chunk, entry.bodyBytes, fault, announced);
    if (cutAt !== undefined && entry.bodyBytes + chunk.length >= cutAt) {
      await write(res, chunk.subarray(0, cutAt - entry.bodyBytes));
      entry.bodyBytes = cutAt;
      return cut(res, upRes, fault, entry);
    }
    if (fault.kind === 'throttle') {
      await throttled(res, chunk, fault.bytesPerSecond, started, entry);
    } else {
      await write(res, chunk);
      entry.bodyBytes += chunk.length;
    }
  }
  await new Promise<void>((resolve) => res.end(resolve));
  entry.outcome = 'complete';
}

/** Writes `chunk` in slices paced so that the body so far never runs ahead of `bps`. */
async function throttled(res: ServerResponse, chunk: Buffer, bps: number, started: number, entry: ProxiedRequest): Promise<void> {
  const slice = Math.max(1, Math.floor(bps / 50));
  for (let off = 0; off < chunk.length; off += slice) {
    const part = chunk.subarray(off, off + slice);
    const due = started + ((entry.bodyBytes + part.length) / bps) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    await write(res, part);
    entry.bodyBytes += part.length;
  }
}

/** Inverts the bytes of `chunk` (at body offset `at`) that fall into the fault's range. */
function corrupt(chunk: Buffer, at: number, fault: Extract<Fault, { kind: 'corrupt' }>, announced: number): Buffer {
  const length = fault.length ?? 1;
  let from = fault.offset ?? 0;
  if (from < 0) from += Number.isFinite(announced) ? announced : 0;
  const lo = Math.max(from, at);
  const hi = Math.min(from + length, at + chunk.length);
  if (lo >= hi) return chunk;
  const copy = Buffer.from(chunk);
  for (let i = lo; i < hi; i++) copy[i - at] = copy[i - at]! ^ 0xff;
  return copy;
}

/** Ends the exchange the fault's way: RST for `reset`, a clean FIN for `truncate`. */
function cut(res: ServerResponse, upRes: IncomingMessage, fault: Fault, entry: ProxiedRequest): void {
  upRes.destroy();
  const socket = res.socket as Socket | null;
  if (fault.kind === 'reset') {
    entry.outcome = 'reset';
    if (socket) socket.resetAndDestroy();
    else res.destroy();
  } else {
    entry.outcome = 'truncated';
    if (socket) socket.end();
    else res.destroy();
  }
}

/** Waits (briefly) until the socket has handed everything written so far to the kernel. */
async function drained(socket: Socket | null): Promise<void> {
  for (let i = 0; socket && !socket.destroyed && socket.writableLength > 0 && i < 1000; i++) await sleep(1);
}

/** res.write that resolves once the chunk was handed to the socket (or rejects if the client left). */
function write(res: ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (res.destroyed) return reject(new Error('client went away'));
    if (chunk.length === 0) {
      res.flushHeaders();
      return resolve();
    }
    res.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}

/** `sha256:<hex>` of some bytes. */
export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/**
 * Pushes `data` as a blob of repository `name` to the registry at `registryUrl` (POST, then
 * a monolithic PUT) and returns its digest. For seeding the upstream behind the proxy.
 */
export async function pushBlob(registryUrl: string, name: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const start = await request(`${registryUrl}/v2/${name}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
  await start.body.dump();
  const location = start.headers.location;
  if (start.statusCode !== 202 || typeof location !== 'string') throw new Error(`pushBlob: POST answered ${start.statusCode}`);
  const put = new URL(location, registryUrl);
  put.searchParams.set('digest', digest);
  const done = await request(put, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) } });
  await done.body.dump();
  if (done.statusCode !== 201) throw new Error(`pushBlob: PUT answered ${done.statusCode}`);
  return digest;
}

/** What a client received, as {@link fetchRaw} reports it. */
export interface RawResponse {
  /** 0 when no response came. */
  status: number;
  headers: IncomingHttpHeaders;
  /** Every body byte that arrived. */
  body: Buffer;
  /** True when the body ended normally (all of Content-Length, or the last chunk). */
  complete: boolean;
  /** Why the exchange broke off, if it did (including an abort asked for by the caller). */
  error?: Error;
  startedAt: number;
  /** When the first body byte arrived. */
  firstByteAt?: number;
  endedAt: number;
}

/** The code of the first error in an OCI error envelope body; undefined when the body is not one. */
export function errorCode(r: { body: Buffer }): string | undefined {
  try {
    return (JSON.parse(r.body.toString('utf8')) as { errors?: Array<{ code?: string }> }).errors?.[0]?.code;
  } catch {
    return undefined;
  }
}

/** Options of {@link fetchRaw}. */
export interface FetchRawOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** Destroy the connection once this many body bytes arrived (a client that goes away). */
  abortAfterBytes?: number;
  /** Called with the running total of body bytes. */
  onData?: (received: number) => void;
}

/**
 * One request on a connection of its own (an independent client), which never throws for
 * what happens on the wire: it reports the status, the bytes that arrived, whether the body
 * was complete, and the error that ended it early.
 */
export function fetchRaw(url: string, opts: FetchRawOptions = {}): Promise<RawResponse> {
  const startedAt = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    let firstByteAt: number | undefined;
    let settled = false;
    const finish = (complete: boolean, error?: Error) => {
      if (settled) return;
      settled = true;
      resolve({ status, headers, body: Buffer.concat(chunks), complete, ...(error ? { error } : {}), startedAt, ...(firstByteAt !== undefined ? { firstByteAt } : {}), endedAt: Date.now() });
    };
    const req = httpGet(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      status = res.statusCode ?? 0;
      headers = res.headers;
      res.on('data', (chunk: Buffer) => {
        firstByteAt ??= Date.now();
        chunks.push(chunk);
        received += chunk.length;
        opts.onData?.(received);
        if (opts.abortAfterBytes !== undefined && received >= opts.abortAfterBytes) {
          req.destroy();
          finish(false, new Error('aborted by the client'));
        }
      });
      res.on('end', () => finish(res.complete, res.complete ? undefined : new Error('body ended early')));
      res.on('aborted', () => finish(false, new Error('response aborted')));
      res.on('error', (err) => finish(false, err));
      res.on('close', () => finish(res.complete, res.complete ? undefined : new Error('connection closed before the body ended')));
    });
    req.on('error', (err) => finish(false, err));
  });
}
