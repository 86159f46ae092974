// Repository names contain slashes, which a router's path parameters cannot hold. Before
// routing, the name part of a /v2/ path is re-encoded with %2F so that the routes read as
// the spec writes them (`/v2/:name/manifests/:reference`) and appear in fastify's route list.

const PATTERNS: readonly RegExp[] = [
  /^\/v2\/(.+)\/(blobs\/uploads\/?[^/]*)$/,
  /^\/v2\/(.+)\/((?:manifests|blobs|referrers)\/[^/]+)$/,
  /^\/v2\/(.+)\/(tags\/list\/?)$/,
];

/** Rewrites `/v2/a/b/manifests/x?q` to `/v2/a%2Fb/manifests/x?q`; other URLs pass unchanged. */
export function rewriteUrl(url: string): string {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (!path.startsWith('/v2/')) return url;
  for (const re of PATTERNS) {
    const m = re.exec(path);
    if (m) {
      const name = m[1]!;
      if (!name.includes('/')) return url;
      return `/v2/${name.replaceAll('/', '%2F')}/${m[2]}${q === -1 ? '' : url.slice(q)}`;
    }
  }
  return url;
}
