// The BuildKit daemon configuration (buildkitd.toml) that sends pulls of Docker Hub and of
// every configured upstream through the cache, and lets BuildKit push to the local registry
// over plain HTTP. It is an output for docker/setup-buildx-action's buildkitd-config-inline.

function hostPort(url: string): string {
  return new URL(url).host;
}

/** buildkitd.toml text for the cache and registry URLs (pure). */
export function buildkitConfig(cacheUrl: string, registryUrl: string, upstreamNamespaces: string[]): string {
  const cache = hostPort(cacheUrl);
  const registry = hostPort(registryUrl);
  const namespaces = [...new Set(['docker.io', ...upstreamNamespaces])];
  const out: string[] = [];
  for (const ns of namespaces) out.push(`[registry."${ns}"]`, `  mirrors = ["${cache}"]`, '');
  out.push(`[registry."${cache}"]`, '  http = true', '  insecure = true', '');
  out.push(`[registry."${registry}"]`, '  http = true', '  insecure = true', '');
  return out.join('\n');
}
