// HOST:PORT listen addresses as the CLI and the Action take them.

/** A parsed listen address. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `HOST:PORT`, `[v6]:PORT` or `:PORT` (loopback); throws a one-line error otherwise. */
export function parseAddress(value: string, flag: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`${flag}: expected HOST:PORT, got "${value}"`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/**
 * The URL a client uses to reach a bound address: a wildcard (`0.0.0.0`, or `::`, which listens
 * on IPv4 too) is reached on 127.0.0.1.
 */
export function urlOf(host: string, port: number, tls: boolean): string {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `${tls ? 'https' : 'http'}://${h}:${port}`;
}
