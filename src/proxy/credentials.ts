// Upstream credentials, from the command line (`--upstream-auth NS=USER:TOKEN`), the
// environment (REGCACHE_UPSTREAM_AUTH, same form, one per line) and the docker client's
// config.json as `docker login` and docker/login-action write it. Never logged.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { normalizeNs, type Credentials } from './upstreams.js';

/**
 * Parses `NS=USER:TOKEN` lines (the form of the flag and the environment variable). Only line
 * breaks separate credentials: a token or password may contain commas.
 */
export function parseCredentialLines(text: string): Map<string, Credentials> {
  const out = new Map<string, Credentials>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    const colon = line.indexOf(':', eq + 1);
    if (eq <= 0 || colon < 0) throw new Error('upstream credentials: expected NS=USER:TOKEN');
    out.set(normalizeNs(line.slice(0, eq)), { username: line.slice(eq + 1, colon), password: line.slice(colon + 1) });
  }
  return out;
}

/** Registry hosts as docker's config.json keys them, normalised to ns values. */
function nsOfConfigKey(key: string): string {
  if (key.includes('index.docker.io/v1')) return 'docker.io';
  return normalizeNs(key.replace(/^https?:\/\//, '').replace(/\/.*$/, ''));
}

/** Credentials stored inline in a docker config.json (`auths`); helpers are not run. */
export function readDockerConfig(path: string): Map<string, Credentials> {
  const out = new Map<string, Credentials>();
  let doc: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return out;
  }
  for (const [key, entry] of Object.entries(doc.auths ?? {})) {
    let username = entry.username;
    let password = entry.password;
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i > 0) {
        username = decoded.slice(0, i);
        password = decoded.slice(i + 1);
      }
    }
    if (username && password) out.set(nsOfConfigKey(key), { username, password });
  }
  return out;
}

/** The default docker config.json path ($DOCKER_CONFIG/config.json, else ~/.docker/config.json). */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
}

/**
 * Every credential source merged: flags win over the environment, which wins over the
 * docker config.
 */
export function loadCredentials(flags: string[], env: NodeJS.ProcessEnv = process.env): Map<string, Credentials> {
  const merged = readDockerConfig(dockerConfigPath(env));
  if (env.REGCACHE_UPSTREAM_AUTH) for (const [k, v] of parseCredentialLines(env.REGCACHE_UPSTREAM_AUTH)) merged.set(k, v);
  for (const f of flags) for (const [k, v] of parseCredentialLines(f)) merged.set(k, v);
  return merged;
}
