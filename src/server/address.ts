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

/** The URL a client uses to reach a bound address. */
export function urlOf(host: string, port: number, tls: boolean): string {
  const h = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host;
  return `${tls ? 'https' : 'http'}://${h}:${port}`;
}
