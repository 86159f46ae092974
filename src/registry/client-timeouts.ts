// Limits on clients that hold a connection without using it: headers must arrive within a
// deadline (node's headersTimeout), a request body must keep arriving while the server waits for
// it, and a connection with no traffic at all is closed. None of them limits how long a transfer
// may take: a large upload at a steady rate runs as long as it needs. Bodies are streamed to disk,
// so a slow client holds a socket and a file, never the bytes it has yet to send.
import type { IncomingMessage, Server } from 'node:http';

/** The client timeouts of one port. */
export interface ClientTimeouts {
  /** Time a client has to send a request's headers. Default 30 s. */
  headersMs?: number;
  /**
   * While the server waits for a request body, the client must send at least `bodyMinBytes`
   * within every window of this length, or the connection is closed. Default 60 s.
   */
  bodyMs?: number;
  /** See `bodyMs`. Default 1 KiB (a client at 1 byte/s is cut, a 1 KB/s link is not). */
  bodyMinBytes?: number;
  /** A connection with no traffic in either direction for this long is closed. Default 5 minutes. */
  idleMs?: number;
}

/** The defaults of {@link ClientTimeouts}. */
export const DEFAULT_CLIENT_TIMEOUTS: Readonly<Required<ClientTimeouts>> = Object.freeze({
  headersMs: 30_000,
  bodyMs: 60_000,
  bodyMinBytes: 1024,
  idleMs: 300_000,
});

/** Samples per body window: a window only counts against the client if every sample found the server waiting. */
const SAMPLES = 4;

/** The timeouts with defaults filled in. */
export function resolveTimeouts(t: ClientTimeouts = {}): Required<ClientTimeouts> {
  return { ...DEFAULT_CLIENT_TIMEOUTS, ...Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined)) };
}

/** Options for `http.createServer` that node applies itself (headers deadline, how often it checks). */
export function httpServerOptions(t: Required<ClientTimeouts>): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  return {
    headersTimeout: t.headersMs,
    // No bound on a whole request: a large blob upload may take long; the body guard handles stalls.
    requestTimeout: 0,
    connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(t.headersMs / 2))),
  };
}

/** True when the request announces a body. */
function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

/**
 * Closes the connection of any request whose body stalls: within each window of `bodyMs`, with
 * the server waiting for bytes all along (nothing received and unread), fewer than
 * `bodyMinBytes` arrived. Bytes the server has not consumed yet (its own backpressure, a slow
 * disk) reset the window instead of counting against the client.
 */
export function guardSlowBodies(server: Server, t: Required<ClientTimeouts>, onCut: (req: IncomingMessage) => void): void {
  server.on('request', (req: IncomingMessage) => {
    if (hasBody(req)) watchBody(req, t, onCut);
  });
}

function watchBody(req: IncomingMessage, t: Required<ClientTimeouts>, onCut: (req: IncomingMessage) => void): void {
  const socket = req.socket;
  let last = socket.bytesRead;
  let waited = 0;
  let received = 0;
  const stop = () => clearInterval(timer);
  const timer = setInterval(() => {
    if (req.complete || socket.destroyed) return stop();
    const read = socket.bytesRead;
    received += read - last;
    last = read;
    if (req.readableLength > 0) {
      // The server has bytes it has not consumed: it is the slow side now. Start over.
      waited = 0;
      received = 0;
      return;
    }
    if (++waited < SAMPLES) return;
    if (received < t.bodyMinBytes) {
      stop();
      onCut(req);
      socket.destroy();
      return;
    }
    waited = 0;
    received = 0;
  }, Math.max(10, Math.floor(t.bodyMs / SAMPLES)));
  timer.unref();
  req.once('close', stop);
  req.once('end', stop);
}
