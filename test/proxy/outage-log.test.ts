// An upstream outage in the log: one line when the upstream's circuit breaker opens (a warning
// naming the upstream and the reason, no stack), one when a trial fails again, one when the
// upstream answers again; the requests in between add nothing. A real HTTP server on
// 127.0.0.1 plays the upstream, failing (503, then refused connections) and recovering; the
// breaker's cool-down is shortened so the test sees every transition.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { UpstreamClient, type UpstreamLog } from '../../src/proxy/index.js';
import { CircuitBreaker } from '../../src/shared/index.js';

interface Line {
  level: 'warn' | 'info';
  fields: Record<string, unknown>;
  message: string;
}

function recorder(): { log: UpstreamLog; lines: Line[] } {
  const lines: Line[] = [];
  return {
    lines,
    log: {
      warn: (fields, message) => lines.push({ level: 'warn', fields, message }),
      info: (fields, message) => lines.push({ level: 'info', fields, message }),
    },
  };
}

/** An upstream on 127.0.0.1:0 answering `status()` to every request. */
async function upstream(status: () => number): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(status(), { 'content-type': 'application/json', 'content-length': '2' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function attempt(client: UpstreamClient): Promise<string> {
  try {
    const res = await client.request('GET', 'library/app', 'manifests/v1');
    res.body.resume();
    return String(res.status);
  } catch (err) {
    return (err as Error).name;
  }
}

test('an upstream outage logs one line per breaker transition, with the upstream and the reason, no stack', { timeout: 30_000 }, async (t) => {
  let failing = true;
  const up = await upstream(() => (failing ? 503 : 404));
  t.after(() => new Promise<void>((resolve) => up.server.close(() => resolve())));
  const { log, lines } = recorder();
  const coolDownMs = 300;
  const client = new UpstreamClient({ ns: 'docker.io', url: up.url }, { retries: 1, backoffMs: 5, breaker: new CircuitBreaker(3, coolDownMs), log });

  // The outage: many requests, one line (when the breaker opens).
  for (let i = 0; i < 10; i++) assert.equal(await attempt(client), 'UpstreamError');
  assert.equal(lines.length, 1, JSON.stringify(lines));
  assert.equal(lines[0]!.level, 'warn');
  assert.equal(lines[0]!.fields.upstream, 'docker.io');
  assert.equal(lines[0]!.fields.reason, 'docker.io answered 503');
  assert.match(lines[0]!.message, /^upstream docker\.io unavailable: docker\.io answered 503; not asked again for \d+ s/);

  // A trial after the cool-down fails: one more line (the upstream is still down).
  await new Promise((r) => setTimeout(r, coolDownMs + 50));
  assert.equal(await attempt(client), 'UpstreamError');
  for (let i = 0; i < 5; i++) await attempt(client);
  assert.equal(lines.length, 2, JSON.stringify(lines));
  assert.equal(lines[1]!.level, 'info');
  assert.match(lines[1]!.message, /^upstream docker\.io still unavailable: docker\.io answered 503/);

  // It answers again: one line, and none while it keeps answering.
  failing = false;
  await new Promise((r) => setTimeout(r, coolDownMs + 50));
  for (let i = 0; i < 5; i++) assert.equal(await attempt(client), '404');
  assert.equal(lines.length, 3, JSON.stringify(lines));
  assert.deepEqual([lines[2]!.level, lines[2]!.message], ['info', 'upstream docker.io answers again']);

  for (const l of lines) assert.ok(!JSON.stringify(l).includes('    at '), `no stack: ${JSON.stringify(l)}`);
});

test('an upstream that refuses connections is logged once, with the connection error as the reason', { timeout: 30_000 }, async (t) => {
  const up = await upstream(() => 200);
  const url = up.url;
  await new Promise<void>((resolve) => up.server.close(() => resolve())); // nothing listens there now
  const { log, lines } = recorder();
  const client = new UpstreamClient({ ns: 'ghcr.io', url }, { retries: 2, backoffMs: 5, log });
  t.after(() => client.close());
  for (let i = 0; i < 6; i++) assert.equal(await attempt(client), 'UpstreamError');
  assert.equal(lines.length, 1, JSON.stringify(lines));
  assert.equal(lines[0]!.level, 'warn');
  assert.equal(lines[0]!.fields.upstream, 'ghcr.io');
  assert.match(String(lines[0]!.fields.reason), /ECONNREFUSED/);
  assert.ok(!JSON.stringify(lines[0]).includes('    at '), 'no stack');
});
