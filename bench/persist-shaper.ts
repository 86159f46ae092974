// A shaping HTTP reverse proxy for the persist section: what a server looks like across the
// internet. Every request waits `latencyMs` before it is forwarded (one round trip per
// request; connection setup is not charged), and the bytes of request and response bodies
// pass through a token bucket per direction shared by all connections (a link of
// `bytesPerSecond` each way, full duplex). Optionally rewrites a string in response bodies
// (the Actions cache stand-in's Twirp answers name its blob front in their signed URLs; the
// rewrite sends the client through the blob front's own shaper instead).
// (bench/shaper.ts, for the cache bench, was not in main when this was written: this one is
// the persist section's own, small on purpose.)
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline, Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/** What the proxy forwarded. */
export interface ShaperCounts {
  requests: number;
  /** GET .../blobs/sha256:... (registry blob downloads). */
  blobGets: number;
  /** Response body bytes passed to clients. */
  bytesDown: number;
  bytesUp: number;
}

export interface Shaper {
  /** Base URL of the proxy (no trailing slash). */
  readonly url: string;
  readonly counts: ShaperCounts;
  close(): Promise<void>;
}

export interface ShaperOptions {
  /** Origin to forward to, e.g. http://127.0.0.1:5000. */
  target: string;
  latencyMs: number;
  bytesPerSecond: number;
  /** Replace `from` with `to` in every response body (bodies are then buffered). */
  rewrite?: { from: string; to: string };
}

/** One direction of a link: a byte budget refilled at a fixed rate, shared by every stream. */
class Link {
  private next = 0;
  constructor(private readonly bytesPerMs: number) {}

  /** Milliseconds until `n` more bytes have gone through. */
  reserve(n: number): number {
    const now = performance.now();
    const start = Math.max(now, this.next);
    this.next = start + n / this.bytesPerMs;
    return this.next - now;
  }
}

function throttle(link: Link, count: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      count(chunk.length);
      const wait = link.reserve(chunk.length);
      if (wait < 1) cb(null, chunk);
      else setTimeout(() => cb(null, chunk), wait);
    },
  });
}

/** Starts a proxy on a free port of 127.0.0.1. */
export async function startShaper(o: ShaperOptions): Promise<Shaper> {
  const target = new URL(o.target);
  const down = new Link(o.bytesPerSecond / 1000);
  const up = new Link(o.bytesPerSecond / 1000);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const counts: ShaperCounts = { requests: 0, blobGets: 0, bytesDown: 0, bytesUp: 0 };

  const forward = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    counts.requests++;
    if (req.method === 'GET' && /\/blobs\/sha256:[0-9a-f]{64}$/.test(req.url ?? '')) counts.blobGets++;
    await sleep(o.latencyMs);
    const headers = { ...req.headers, host: target.host };
    const out = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent }, (ures) => {
      if (o.rewrite) {
        const chunks: Buffer[] = [];
        ures.on('data', (c: Buffer) => chunks.push(c));
        ures.on('end', () => {
          const body = Buffer.from(Buffer.concat(chunks).toString('utf8').split(o.rewrite!.from).join(o.rewrite!.to));
          const h = { ...ures.headers, 'content-length': String(body.length) };
          delete h['transfer-encoding'];
          res.writeHead(ures.statusCode ?? 502, h);
          counts.bytesDown += body.length;
          res.end(body);
        });
        ures.on('error', () => res.destroy());
        return;
      }
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      pipeline(ures, throttle(down, (n) => (counts.bytesDown += n)), res, () => {});
    });
    out.on('error', (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`shaper: ${err.message}`);
      } else res.destroy();
    });
    pipeline(req, throttle(up, (n) => (counts.bytesUp += n)), out, () => {});
  };

  const server = createServer((req, res) => void forward(req, res));
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
