// A TCP proxy in front of the benchmark's upstream registry that makes loopback look like a
// registry across the internet, and counts what crosses it. Every byte it forwards is counted
// per direction (the response direction is "upstream bytes": what a cache fetched), and the
// request lines of the plain HTTP/1.1 it carries are recorded (the cache and distribution only
// send GET and HEAD upstream, which have no bodies, so the client-to-upstream stream is
// request headers only).
//
// Shaping (optional) models one network link between the clients and the upstream:
// - latency: every piece of data is delivered `oneWayDelayMs` after it was sent, in each
//   direction (round trip = 2x), and a new connection's first request byte reaches the upstream
//   only 1.5 round trips after the connection was accepted (SYN, SYN-ACK, then the data);
// - bandwidth: `bytesPerSecond` per direction, shared by all connections (the client machine's
//   link, as on a CI runner): data is serialised onto the link in arrival order, then delayed.
// Each connection keeps at most `windowBytes` in flight per direction (TCP's window: the source
// is paused until the far side has received enough); 4 MiB is above the bandwidth-delay product
// of 50 MB/s x 30 ms (1.5 MB), so a single connection can fill the link.
import { createServer, connect, type Server, type Socket } from 'node:net';

/** How to shape; omit for a counting pass-through. */
export interface Shaping {
  /** Added delay per direction, ms. */
  oneWayDelayMs: number;
  /** Link rate per direction, shared by all connections, bytes per second. */
  bytesPerSecond: number;
  /** Bytes in flight per connection and direction before the source is paused; default 4 MiB. */
  windowBytes?: number;
}

/** A running proxy. */
export interface Shaper {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** Bytes delivered from the upstream to clients since the last reset. */
  bytesDown(): number;
  /** Bytes delivered from clients to the upstream since the last reset. */
  bytesUp(): number;
  /** Connections accepted since the last reset. */
  connections(): number;
  /** Request lines (`GET /v2/...`) seen since the last reset, in order. */
  requests(): string[];
  /** Zeroes the counters. */
  reset(): void;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

/** One direction of the shared link: when the next byte may start serialising. */
class Link {
  private free = 0;
  constructor(private readonly shaping: Shaping) {}

  /** The time (performance.now() ms) a chunk of `length` bytes sent now arrives at the far side. */
  arrival(length: number, now: number): number {
    const start = Math.max(now, this.free);
    this.free = start + (length * 1000) / this.shaping.bytesPerSecond;
    return this.free + this.shaping.oneWayDelayMs;
  }
}

const REQUEST_LINE = /(?:^|\r\n)((?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) \S+) HTTP\/1\.[01]\r\n/g;

/** Starts a proxy to `upstream` (http://host:port) on 127.0.0.1:0. */
export async function startShaper(upstream: string, shaping?: Shaping): Promise<Shaper> {
  const target = new URL(upstream);
  const port = Number(target.port || 80);
  const sockets = new Set<Socket>();
  const links = shaping ? { up: new Link(shaping), down: new Link(shaping) } : undefined;
  const window = shaping?.windowBytes ?? 4 * 1024 * 1024;
  let down = 0;
  let up = 0;
  let accepted = 0;
  let lines: string[] = [];

  const server: Server = createServer((client) => {
    accepted++;
    const acceptedAt = performance.now();
    const remote = connect(port, target.hostname);
    for (const s of [client, remote]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.once('close', () => sockets.delete(s));
      // Either side failing ends the connection as a whole, as a broken network path would.
      s.once('error', () => {
        client.destroy();
        remote.destroy();
      });
    }
    const countUp = (chunk: Buffer) => {
      up += chunk.byteLength;
      for (const m of chunk.toString('latin1').matchAll(REQUEST_LINE)) lines.push(m[1]!);
    };
    const countDown = (chunk: Buffer) => {
      down += chunk.byteLength;
    };
    if (!links) {
      client.on('data', countUp);
      remote.on('data', countDown);
      client.pipe(remote);
      remote.pipe(client);
      return;
    }
    // The handshake's 1.5 round trips: nothing reaches the upstream before then.
    const firstByteAt = acceptedAt + 3 * shaping!.oneWayDelayMs;
    relay(client, remote, links.up, window, (c) => countUp(c), firstByteAt);
    relay(remote, client, links.down, window, (c) => countDown(c), 0);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('shaper: no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    bytesDown: () => down,
    bytesUp: () => up,
    connections: () => accepted,
    requests: () => [...lines],
    reset() {
      down = 0;
      up = 0;
      accepted = 0;
      lines = [];
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/**
 * Forwards `src` to `dst` through `link`: each chunk is written to `dst` when the link says it
 * arrives (never before `notBefore`), in order; `src` is paused while more than `window` bytes
 * are in flight or `dst` wants draining. `delivered` is called with each chunk as it is written.
 */
function relay(src: Socket, dst: Socket, link: Link, window: number, delivered: (chunk: Buffer) => void, notBefore: number): void {
  const queue: { chunk: Buffer; at: number }[] = [];
  let inFlight = 0;
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  let draining = false;

  const maybeResume = () => {
    if (inFlight <= window / 2 && !draining && src.isPaused()) src.resume();
  };
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length && queue[0]!.at <= now) {
      const { chunk } = queue.shift()!;
      inFlight -= chunk.byteLength;
      delivered(chunk);
      if (!dst.write(chunk) && !draining) {
        draining = true;
        dst.once('drain', () => {
          draining = false;
          maybeResume();
        });
      }
    }
    if (queue.length) arm();
    else if (ended) dst.end();
    maybeResume();
  };
  const arm = () => {
    if (timer || !queue.length) return;
    timer = setTimeout(flush, Math.max(0, queue[0]!.at - performance.now()));
  };
  src.on('data', (chunk: Buffer) => {
    const now = performance.now();
    queue.push({ chunk, at: Math.max(link.arrival(chunk.byteLength, now), notBefore) });
    inFlight += chunk.byteLength;
    if (inFlight > window) src.pause();
    arm();
  });
  src.once('end', () => {
    ended = true;
    if (!queue.length && !timer) dst.end();
  });
  src.once('close', () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    // A source that closed without ending cleanly (an error) takes the other side with it.
    if (!ended) dst.destroy();
    else if (queue.length) arm();
  });
}
