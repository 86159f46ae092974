// The shape of distribution's configuration (configuration/configuration.go, 2.8 and 3.x): the
// keys its YAML file may hold, the type each value is read as, and the name of the Go field
// behind each key, which is what a REGISTRY_* variable names (REGISTRY_HEALTH_FILECHECKERS sets
// `health.file`). Only the shape: what regcache makes of each key is in settings.ts.

/** How a value is read: a Go struct, a map of string keys, a list, a scalar, or anything. */
export type ConfigType =
  | { kind: 'struct'; fields: Readonly<Record<string, Field>> }
  | { kind: 'map'; of: ConfigType }
  | { kind: 'list'; of: ConfigType }
  | { kind: 'string' | 'bool' | 'int' | 'duration' | 'loglevel' | 'any' }
  /** distribution's Storage and Auth: a map of parameter maps, or a string naming one type. */
  | { kind: 'typed' };

/** A field of a struct: its type, and its Go name when that is not the YAML key. */
export interface Field {
  type: ConfigType;
  /** The Go field name upper-cased, as REGISTRY_* variables spell it; default: the key upper-cased. */
  env?: string;
}

const string: ConfigType = { kind: 'string' };
const bool: ConfigType = { kind: 'bool' };
const int: ConfigType = { kind: 'int' };
const duration: ConfigType = { kind: 'duration' };
const any: ConfigType = { kind: 'any' };
const strings: ConfigType = { kind: 'list', of: string };
/** Go's http.Header: a map of lists of strings. */
const headers: ConfigType = { kind: 'map', of: strings };

function struct(fields: Record<string, ConfigType | Field>): ConfigType {
  const out: Record<string, Field> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = 'type' in v ? v : { type: v };
  return { kind: 'struct', fields: out };
}

const checker = (extra: Record<string, ConfigType>): ConfigType => struct({ interval: duration, threshold: int, timeout: duration, ...extra });

/** distribution's `Configuration` (version 0.1), the fields of 2.8 and of 3.x together. */
export const DISTRIBUTION_SCHEMA: ConfigType = struct({
  version: string,
  log: struct({
    accesslog: struct({ disabled: bool }),
    level: { kind: 'loglevel' },
    formatter: string,
    fields: { kind: 'map', of: any },
    hooks: { kind: 'list', of: struct({ disabled: bool, type: string, levels: strings, options: { env: 'MAILOPTIONS', type: any } }) },
    reportcaller: bool,
  }),
  loglevel: { kind: 'loglevel' },
  storage: { kind: 'typed' },
  auth: { kind: 'typed' },
  middleware: { kind: 'map', of: { kind: 'list', of: struct({ name: string, disabled: bool, options: { kind: 'map', of: any } }) } },
  reporting: struct({
    bugsnag: struct({ apikey: string, releasestage: string, endpoint: string }),
    newrelic: struct({ licensekey: string, name: string, verbose: bool }),
  }),
  http: struct({
    addr: string,
    net: string,
    host: string,
    prefix: string,
    secret: string,
    relativeurls: { env: 'RELATIVEURLS', type: bool },
    draintimeout: duration,
    tls: struct({
      certificate: string,
      key: string,
      clientcas: strings,
      clientauth: string,
      minimumtls: string,
      ciphersuites: strings,
      letsencrypt: struct({ cachefile: string, email: string, hosts: strings, directoryurl: string }),
    }),
    headers,
    debug: struct({ addr: string, prometheus: struct({ enabled: bool, path: string }) }),
    http2: struct({ disabled: bool }),
    h2c: struct({ enabled: bool }),
  }),
  notifications: struct({
    events: { env: 'EVENTCONFIG', type: struct({ includereferences: bool }) },
    endpoints: {
      kind: 'list',
      of: struct({
        name: string,
        disabled: bool,
        url: string,
        headers,
        timeout: duration,
        threshold: int,
        backoff: duration,
        ignoredmediatypes: strings,
        ignore: struct({ mediatypes: strings, actions: strings }),
      }),
    },
  }),
  // 2.8's redis section and 3.x's (go-redis options, inlined): every key is read as anything.
  redis: { kind: 'map', of: any },
  health: struct({
    file: { env: 'FILECHECKERS', type: { kind: 'list', of: checker({ file: string }) } },
    http: { env: 'HTTPCHECKERS', type: { kind: 'list', of: checker({ uri: string, headers, statuscode: int }) } },
    tcp: { env: 'TCPCHECKERS', type: { kind: 'list', of: checker({ addr: string }) } },
    storagedriver: struct({ enabled: bool, interval: duration, threshold: int }),
  }),
  catalog: struct({ maxentries: int }),
  tags: struct({ maxtags: int }),
  proxy: struct({
    remoteurl: { env: 'REMOTEURL', type: string },
    username: string,
    password: string,
    exec: struct({ command: string, lifetime: duration }),
    ttl: duration,
    cachewritetimeout: duration,
  }),
  compatibility: struct({ schema1: struct({ signingkeyfile: { env: 'TRUSTKEY', type: string }, enabled: bool }) }),
  validation: struct({
    enabled: bool,
    disabled: bool,
    manifests: struct({
      urls: struct({ allow: strings, deny: strings }),
      indexes: struct({ platforms: string, platformlist: { kind: 'list', of: struct({ architecture: string, os: string }) } }),
    }),
  }),
  policy: struct({ repository: struct({ classes: strings }) }),
});

/** The env name of a struct field (the Go field name, upper-cased). */
export function envName(key: string, field: Field): string {
  return field.env ?? key.toUpperCase();
}
