// The child process of one @actions/cache call (bundled as dist/cache-worker.js; spawned by
// library-call.ts with its own environment and working directory, so that the library's
// process-wide reads, GITHUB_WORKSPACE and the working directory its save globs from, belong to
// this call alone). It makes the call named by its argument (worker-protocol.ts), watches the
// HTTP exchanges the call makes through node's diagnostics channels (read-only: a role, a status,
// a Retry-After per request, nothing patched), sends the parent one IPC message with what the
// library returned or threw and those exchanges, and exits. The library's own lines go to the
// stdout and stderr it inherited (the step's log); nothing here reads them.
import * as cache from '@actions/cache';
import { subscribe } from 'node:diagnostics_channel';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { exchangeKind, type Exchange, type WorkerReport, type WorkerRequest } from './worker-protocol.js';

const exchanges: Exchange[] = [];
const byRequest = new WeakMap<object, Exchange>();

subscribe('http.client.request.start', (message) => {
  const { request } = message as { request: ClientRequest };
  const exchange: Exchange = { kind: exchangeKind(request.method, request.path) };
  exchanges.push(exchange);
  byRequest.set(request, exchange);
});
subscribe('http.client.response.finish', (message) => {
  const { request, response } = message as { request: ClientRequest; response: IncomingMessage };
  const exchange = byRequest.get(request);
  if (!exchange || response.statusCode === undefined) return;
  exchange.status = response.statusCode;
  const retryAfter = Number.parseInt(String(response.headers['retry-after'] ?? ''), 10);
  if (Number.isFinite(retryAfter)) exchange.retryAfterS = retryAfter;
});
subscribe('http.client.request.error', (message) => {
  const { request, error } = message as { request: ClientRequest; error: NodeJS.ErrnoException };
  const exchange = byRequest.get(request);
  if (exchange) exchange.error = error.code ?? error.name;
});

/** Makes the call; what it returned or threw. */
async function call(request: WorkerRequest): Promise<Omit<WorkerReport, 'exchanges'>> {
  try {
    if (request.op === 'save') return { value: await cache.saveCache([request.path], request.key) };
    const download = { lookupOnly: request.lookupOnly, timeoutInMs: request.timeoutMs, segmentTimeoutInMs: request.timeoutMs };
    const key = await cache.restoreCache([request.path], request.key, request.restoreKeys, download);
    return key === undefined ? {} : { value: key };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    return { thrown: { name: e.name, message: e.message } };
  }
}

const send = process.send?.bind(process);
if (!send) {
  process.stderr.write('cache-worker: run by regcache (an IPC channel to the parent is required)\n');
  process.exit(2);
}
// The parent is gone (stopped, killed): nobody waits for this call.
process.on('disconnect', () => process.exit(1));
const result = await call(JSON.parse(process.argv[2] ?? '{}') as WorkerRequest);
const report: WorkerReport = { ...result, exchanges };
send(report, () => process.exit(0));
