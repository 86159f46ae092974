// The client of one upstream registry, on undici: pooled keep-alive connections, timeouts,
// the bearer-token challenge flow (anonymous or with credentials, tokens cached per
// repository scope until they expire) and basic auth, redirects (credentials never follow
// to another origin), bounded retries with backoff on 5xx and connection errors, 429
// answered by holding off until Retry-After, and a circuit breaker.
import { Agent, request, type Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import { CircuitBreaker, SingleFlight } from '../shared/index.js';
import { parseChallenge, type Challenge } from './challenge.js';
import type { UpstreamConfig } from './upstreams.js';
import type { Stats } from '../stats/index.js';

/** Why an upstream could not answer usefully. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: 'unavailable' | 'rate-limited' | 'unauthorized',
    message: string,
    readonly opts: { status?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'UpstreamError';
  }
}

/** A response from upstream; the caller must consume or destroy `body`. */
export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** Tunables of an {@link UpstreamClient}. */
export interface UpstreamClientOptions {
  stats?: Stats;
  dispatcher?: Dispatcher;
  /** Retries after the first attempt on 5xx and connection errors. Default 2. */
  retries?: number;
  /** Base backoff in ms, doubled per retry. Default 200. */
  backoffMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  breaker?: CircuitBreaker;
  /** Where the upstream's outages go: one line when its breaker opens, one when it closes again. */
  log?: UpstreamLog;
}

/** The part of a (pino) logger the client writes to. */
export interface UpstreamLog {
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
}

/** An error's message, with its code when it has one (`connect ECONNREFUSED ...`). */
function reasonOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err ?? 'no answer');
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}

interface CachedAuth {
  header: string;
  expiresAt: number;
}

const REDIRECTS = [301, 302, 303, 307, 308];
const MAX_REDIRECTS = 5;

/** One header value as a string. */
export function header(h: UpstreamResponse['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function retryAfterMs(value: string | undefined): number {
  if (!value) return 60_000;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.min(Math.max(secs, 1), 3600) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.min(Math.max(at - Date.now(), 1000), 3_600_000) : 60_000;
}

/** A shared connection pool for every upstream. */
export function createDispatcher(connectTimeoutMs = 10_000): Agent {
  return new Agent({ connections: 64, keepAliveTimeout: 30_000, connect: { timeout: connectTimeoutMs } });
}

/** Client of one upstream registry. */
export class UpstreamClient {
  readonly breaker: CircuitBreaker;
  private readonly dispatcher: Dispatcher;
  private readonly auth = new Map<string, CachedAuth>();
  private readonly tokenFlight = new SingleFlight<CachedAuth>();
  private bearer: { realm: string; service?: string } | undefined;
  private basic = false;
  private blockedUntil = 0;

  constructor(readonly config: UpstreamConfig, private readonly opts: UpstreamClientOptions = {}) {
    this.dispatcher = opts.dispatcher ?? createDispatcher();
    this.breaker = opts.breaker ?? new CircuitBreaker();
  }

  /**
   * Sends `method` to `/v2/<remote>/<path>`, authenticating as challenged, retrying what
   * is worth retrying. Resolves with any 2xx or 4xx (but 401 after auth, and 429, which throw).
   */
  async request(method: 'GET' | 'HEAD', remote: string, path: string, headers: Record<string, string> = {}, countedPull = false): Promise<UpstreamResponse> {
    if (Date.now() < this.blockedUntil) {
      throw new UpstreamError('rate-limited', `${this.config.ns} asked us to wait`, { status: 429, retryAfterMs: this.blockedUntil - Date.now() });
    }
    if (!this.breaker.allow()) {
      throw new UpstreamError('unavailable', `${this.config.ns} is failing; not asking again for ${Math.ceil(this.breaker.retryInMs() / 1000)}s`);
    }
    const scope = `repository:${remote}:pull`;
    const url = `${this.config.url}/v2/${remote}/${path}`;
    const retries = this.opts.retries ?? 2;
    let lastError: unknown;
    let authRetried = false;
    for (let attempt = 0; ; ) {
      let res: UpstreamResponse | undefined;
      try {
        res = await this.send(method, url, { ...headers, ...(await this.authHeader(scope)) }, countedPull && method === 'GET');
      } catch (err) {
        if (err instanceof UpstreamError) {
          this.settle(err);
          throw err;
        }
        lastError = err;
      }
      if (res?.status === 401 && !authRetried) {
        res.body.resume();
        authRetried = true;
        try {
          await this.onChallenge(parseChallenge(header(res.headers, 'www-authenticate')), scope);
        } catch (err) {
          this.settle(err);
          throw err;
        }
        continue;
      }
      if (res && res.status < 500) return this.accept(res);
      if (res) {
        res.body.resume();
        lastError = new Error(`${this.config.ns} answered ${res.status}`);
      }
      // Every failed attempt counts: a dead upstream opens the breaker within one or two requests.
      this.failed(lastError);
      if (attempt >= retries || this.breaker.state === 'open') break;
      await this.backoff(attempt++);
    }
    throw new UpstreamError('unavailable', `${this.config.ns} is unavailable: ${(lastError as Error)?.message ?? 'no answer'}`, { cause: lastError });
  }

  /**
   * Settles the breaker for an attempt that ended in an error before a usable response, so a
   * half-open trial never stays in flight. A refusal of our credentials is an answer from a
   * working upstream, not an outage: it must not open the breaker.
   */
  private settle(err: unknown): void {
    if (err instanceof UpstreamError && err.kind !== 'unavailable') this.succeeded();
    else this.failed(err);
  }

  /**
   * Tells the breaker of a failed attempt; the breaker's opening is logged once, with the
   * upstream and the reason (no stack): what an outage leaves in the log.
   */
  private failed(err: unknown): void {
    const before = this.breaker.state;
    this.breaker.failure();
    if (this.breaker.state !== 'open' || before === 'open') return;
    const retryInS = Math.ceil(this.breaker.retryInMs() / 1000);
    const fields = { upstream: this.config.ns, url: this.config.url, reason: reasonOf(err), retryInS };
    if (before === 'half-open') this.opts.log?.info(fields, `upstream ${this.config.ns} still unavailable: ${fields.reason}; not asked again for ${retryInS} s`);
    else this.opts.log?.warn(fields, `upstream ${this.config.ns} unavailable: ${fields.reason}; not asked again for ${retryInS} s (cached tags are served stale meanwhile)`);
  }

  /** Tells the breaker of an answer; an upstream back after an outage is logged once. */
  private succeeded(): void {
    const before = this.breaker.state;
    this.breaker.success();
    if (before !== 'closed') this.opts.log?.info({ upstream: this.config.ns, url: this.config.url }, `upstream ${this.config.ns} answers again`);
  }

  /** Classifies a response below 500: auth refusals and 429 throw, the rest is returned. */
  private accept(res: UpstreamResponse): UpstreamResponse {
    if (res.status === 401 || res.status === 403) {
      res.body.resume();
      this.succeeded();
      throw new UpstreamError('unauthorized', `${this.config.ns} refused our credentials (${res.status})`, { status: res.status });
    }
    if (res.status === 429) {
      res.body.resume();
      this.succeeded();
      const wait = retryAfterMs(header(res.headers, 'retry-after'));
      this.blockedUntil = Date.now() + wait;
      throw new UpstreamError('rate-limited', `${this.config.ns} answered 429 Too Many Requests`, { status: 429, retryAfterMs: wait });
    }
    this.succeeded();
    this.recordRateLimit(res);
    return res;
  }

  private async backoff(attempt: number): Promise<void> {
    const base = this.opts.backoffMs ?? 200;
    const ms = base * 2 ** attempt * (0.5 + Math.random() / 2);
    await new Promise((r) => setTimeout(r, ms));
  }

  /** One request, following redirects; Authorization is dropped when the origin changes. */
  private async send(method: 'GET' | 'HEAD', url: string, headers: Record<string, string>, countedPull: boolean): Promise<UpstreamResponse> {
    let current = url;
    let h = headers;
    for (let i = 0; i <= MAX_REDIRECTS; i++) {
      const started = Date.now();
      let res: Dispatcher.ResponseData;
      try {
        res = await request(current, {
          method,
          headers: h,
          dispatcher: this.dispatcher,
          // undici closes the connection after a HEAD unless told not to: registries send no
          // body with HEAD, so keep it (a revalidation then costs no new TCP and TLS handshake).
          ...(method === 'HEAD' ? { reset: false } : {}),
          headersTimeout: this.opts.headersTimeoutMs ?? 30_000,
          bodyTimeout: this.opts.bodyTimeoutMs ?? 60_000,
        });
      } catch (err) {
        this.opts.stats?.upstreamRequest(this.config.ns, method, 0, Date.now() - started, false);
        throw err;
      }
      this.opts.stats?.upstreamRequest(this.config.ns, method, res.statusCode, Date.now() - started, countedPull && i === 0 && res.statusCode < 300);
      const location = header(res.headers, 'location');
      if (!REDIRECTS.includes(res.statusCode) || !location) {
        return { status: res.statusCode, headers: res.headers, body: res.body as unknown as Readable };
      }
      res.body.resume();
      const next = new URL(location, current);
      if (next.origin !== new URL(current).origin) {
        const { authorization: _dropped, ...rest } = h;
        h = rest;
      }
      current = next.toString();
    }
    throw new UpstreamError('unavailable', `${this.config.ns}: too many redirects`);
  }

  /** The Authorization header to send for `scope`, fetching a token when one is due. */
  private async authHeader(scope: string): Promise<Record<string, string>> {
    const cached = this.auth.get(scope);
    if (cached && cached.expiresAt > Date.now()) return { authorization: cached.header };
    if (this.bearer) return { authorization: (await this.fetchToken(this.bearer.realm, this.bearer.service, scope)).header };
    if (this.basic && this.config.credentials) return { authorization: this.basicHeader() };
    return {};
  }

  private basicHeader(): string {
    const c = this.config.credentials!;
    return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
  }

  private async onChallenge(challenge: Challenge | undefined, scope: string): Promise<void> {
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      const realm = challenge.params.realm;
      this.bearer = challenge.params.service ? { realm, service: challenge.params.service } : { realm };
      this.auth.delete(scope);
      await this.fetchToken(this.bearer.realm, this.bearer.service, scope);
      return;
    }
    if (challenge?.scheme === 'basic' && this.config.credentials) {
      this.basic = true;
      return;
    }
    throw new UpstreamError('unauthorized', `${this.config.ns} requires credentials we do not have`, { status: 401 });
  }

  private async fetchToken(realm: string, service: string | undefined, scope: string): Promise<CachedAuth> {
    const cached = this.auth.get(scope);
    if (cached && cached.expiresAt > Date.now()) return cached;
    return this.tokenFlight.run(scope, async () => {
      const u = new URL(realm);
      if (service) u.searchParams.set('service', service);
      u.searchParams.set('scope', scope);
      const headers: Record<string, string> = {};
      if (this.config.credentials) headers.authorization = this.basicHeader();
      const started = Date.now();
      let res: Dispatcher.ResponseData;
      try {
        res = await request(u, { method: 'GET', headers, dispatcher: this.dispatcher, headersTimeout: 15_000, bodyTimeout: 15_000 });
      } catch (err) {
        throw new UpstreamError('unavailable', `${this.config.ns}: token service unreachable`, { cause: err });
      }
      this.opts.stats?.upstreamRequest(`${this.config.ns} (token)`, 'GET', res.statusCode, Date.now() - started, false);
      if (res.statusCode !== 200) {
        await res.body.dump();
        if (res.statusCode === 401 || res.statusCode === 403) throw new UpstreamError('unauthorized', `${this.config.ns}: token refused (${res.statusCode})`, { status: res.statusCode });
        throw new UpstreamError('unavailable', `${this.config.ns}: token service answered ${res.statusCode}`);
      }
      const doc = (await res.body.json()) as { token?: string; access_token?: string; expires_in?: number };
      const token = doc.token ?? doc.access_token;
      if (!token) throw new UpstreamError('unavailable', `${this.config.ns}: token response without a token`);
      const ttl = Math.max(60, Number(doc.expires_in) || 60) * 1000;
      const entry = { header: `Bearer ${token}`, expiresAt: Date.now() + ttl - 10_000 };
      this.auth.set(scope, entry);
      return entry;
    }).promise;
  }

  private recordRateLimit(res: UpstreamResponse): void {
    const limit = header(res.headers, 'ratelimit-limit');
    const remaining = header(res.headers, 'ratelimit-remaining');
    if (limit !== undefined && remaining !== undefined) this.opts.stats?.rateLimit(this.config.ns, limit, remaining);
  }

  /** Closes the connection pool if this client owns it. */
  async close(): Promise<void> {
    if (!this.opts.dispatcher) await this.dispatcher.close();
  }
}

/** Reads an upstream body whole, at most `limit` bytes: past it the body is dropped and `tooLarge()` thrown. */
export async function readLimited(body: AsyncIterable<Uint8Array> & { destroy(): void }, limit: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > limit) {
      body.destroy();
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}
