// Upstream registries and how a request on the cache port is routed to one: by the `ns`
// query parameter containerd and BuildKit send, else by a path prefix naming a configured
// registry (`ghcr.io/owner/image`), else Docker Hub. Docker Hub's implicit `library/`
// namespace is added for one-component names.
import { MAX_NAME_LENGTH, RegistryError } from '../oci/index.js';

/** Docker Hub's namespace and the default upstream. */
export const DOCKER_HUB = 'docker.io';
/** The default upstream list. */
export const DEFAULT_UPSTREAMS: readonly string[] = ['docker.io=https://registry-1.docker.io'];

const ALIASES: Readonly<Record<string, string>> = {
  'index.docker.io': DOCKER_HUB,
  'registry-1.docker.io': DOCKER_HUB,
  'registry.hub.docker.com': DOCKER_HUB,
};

/** Credentials for one upstream. */
export interface Credentials {
  username: string;
  password: string;
}

/** One configured upstream. */
export interface UpstreamConfig {
  /** The registry host it stands for: `docker.io`, `ghcr.io`, `registry.example:5000`. */
  ns: string;
  /** Base URL requests go to: `https://registry-1.docker.io`. */
  url: string;
  credentials?: Credentials;
}

/** Where a cache-port request goes. */
export interface Route {
  upstream: UpstreamConfig;
  /** The repository name upstream (`library/alpine`). */
  remote: string;
  /** The name the cache keeps it under: `<ns>/<remote>`, with `:` of the ns as `_`. */
  canonical: string;
}

/** Normalises a registry host as `ns` values and path prefixes name it. */
export function normalizeNs(ns: string): string {
  const lower = ns.trim().toLowerCase();
  return ALIASES[lower] ?? lower;
}

/** Parses one `NS=URL` flag value. */
export function parseUpstream(value: string): UpstreamConfig {
  const i = value.indexOf('=');
  if (i <= 0) throw new Error(`--upstream: expected NS=URL, got "${value}"`);
  const ns = normalizeNs(value.slice(0, i));
  const raw = value.slice(i + 1).trim();
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`--upstream ${ns}: "${raw}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`--upstream ${ns}: URL must be http or https`);
  if (!/^[a-z0-9.-]+(?::\d+)?$/.test(ns)) throw new Error(`--upstream: "${ns}" is not a registry host name`);
  return { ns, url: url.origin };
}

/** Maps cache-port repository names to upstreams. */
export class UpstreamRouter {
  private readonly byNs = new Map<string, UpstreamConfig>();
  readonly upstreams: readonly UpstreamConfig[];

  constructor(upstreams: UpstreamConfig[]) {
    if (upstreams.length === 0) throw new Error('at least one upstream is required');
    for (const u of upstreams) this.byNs.set(u.ns, u);
    this.upstreams = upstreams;
  }

  /** The upstream configured for `ns`, if any. */
  get(ns: string): UpstreamConfig | undefined {
    return this.byNs.get(normalizeNs(ns));
  }

  /** Routes a (validated) repository name with the request's optional `ns` parameter. */
  route(name: string, ns?: string): Route {
    let upstream: UpstreamConfig | undefined;
    let remote = name;
    if (ns) {
      upstream = this.get(ns);
      if (!upstream) throw new RegistryError('NAME_UNKNOWN', `no upstream is configured for ${ns.slice(0, 100)}`);
    } else {
      const slash = name.indexOf('/');
      const first = slash > 0 ? name.slice(0, slash) : '';
      const prefixed = first ? this.get(first) : undefined;
      if (prefixed && (first.includes('.') || first.includes(':') || first === 'localhost')) {
        upstream = prefixed;
        remote = name.slice(slash + 1);
      } else {
        upstream = this.byNs.get(DOCKER_HUB) ?? this.upstreams[0]!;
      }
    }
    if (upstream.ns === DOCKER_HUB && !remote.includes('/')) remote = `library/${remote}`;
    // A one-component name of 248-255 characters is valid here but not upstream once
    // `library/` is added: say so as the upstream would, without asking it.
    if (remote.length > MAX_NAME_LENGTH) throw new RegistryError('NAME_INVALID', `${upstream.ns} names are at most ${MAX_NAME_LENGTH} characters, and ${remote.slice(0, 40)}... has ${remote.length}`);
    return { upstream, remote, canonical: `${upstream.ns.replaceAll(':', '_')}/${remote}` };
  }

  /** The route of a canonical name made by {@link route}. */
  fromCanonical(canonical: string): Route {
    const slash = canonical.indexOf('/');
    const key = canonical.slice(0, slash);
    const upstream = this.upstreams.find((u) => u.ns.replaceAll(':', '_') === key);
    if (!upstream || slash <= 0) throw new RegistryError('NAME_UNKNOWN', 'no upstream for this repository');
    return { upstream, remote: canonical.slice(slash + 1), canonical };
  }
}
