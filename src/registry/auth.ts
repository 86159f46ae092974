// Optional HTTP basic authentication against an htpasswd file (bcrypt entries only, as
// distribution). An unknown user costs the same bcrypt work as a known one, and a
// verified credential is remembered briefly so that a pull does not run bcrypt per request.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import bcrypt from 'bcryptjs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../oci/index.js';

/**
 * The password of the hash an unknown user's credential is checked against (so that it costs the
 * same bcrypt work as a known user's). Not a secret: it must never let anyone in.
 */
export const UNKNOWN_USER_PASSWORD = 'regcache-no-such-user';

const REMEMBER_MS = 5 * 60 * 1000;
const MAX_REMEMBERED = 10_000;

/** Users and bcrypt hashes read from an htpasswd file. */
export function parseHtpasswd(text: string): Map<string, string> {
  const users = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const hash = line.slice(i + 1);
    if (/^\$2[aby]\$\d\d\$/.test(hash)) users.set(line.slice(0, i), hash);
  }
  return users;
}

/** Basic-auth verifier with a short-lived memory of good credentials. */
export class BasicAuth {
  private readonly remembered = new Map<string, number>();
  private readonly pending = new Map<string, Promise<boolean>>();
  private readonly dummyHash: string;

  constructor(private readonly users: Map<string, string>, readonly realm = 'regcache') {
    const cost = Number(users.values().next().value?.slice(4, 6) ?? 10);
    this.dummyHash = bcrypt.hashSync(UNKNOWN_USER_PASSWORD, cost);
  }

  /** Loads the htpasswd file at `path`; throws if it has no bcrypt entry. */
  static fromFile(path: string): BasicAuth {
    const users = parseHtpasswd(readFileSync(path, 'utf8'));
    if (users.size === 0) throw new Error(`${path}: no bcrypt entries (only bcrypt htpasswd entries are supported)`);
    return new BasicAuth(users);
  }

  /** True when the Authorization header carries a valid user and password. */
  async verify(header: string | undefined): Promise<boolean> {
    if (!header || !/^basic /i.test(header)) return false;
    const key = createHash('sha256').update(header).digest('hex');
    const until = this.remembered.get(key);
    if (until !== undefined && until > Date.now()) return true;
    let p = this.pending.get(key);
    if (!p) {
      p = this.check(header.slice(6).trim()).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    const ok = await p;
    if (ok) this.remember(key);
    return ok;
  }

  private async check(encoded: string): Promise<boolean> {
    const decoded = Buffer.from(encoded, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    // No colon: not user:password (distribution refuses it too, as Go's BasicAuth does).
    if (i < 0) return false;
    const user = decoded.slice(0, i);
    const password = decoded.slice(i + 1);
    const hash = this.users.get(user);
    const ok = await bcrypt.compare(password, hash ?? this.dummyHash);
    return ok && hash !== undefined;
  }

  private remember(key: string): void {
    if (this.remembered.size >= MAX_REMEMBERED) this.remembered.clear();
    this.remembered.set(key, Date.now() + REMEMBER_MS);
  }

  /** fastify onRequest hook: rejects the request with 401 unless it is authenticated. */
  hook = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (await this.verify(request.headers.authorization)) return;
    reply.header('www-authenticate', `Basic realm="${this.realm}"`);
    throw new RegistryError('UNAUTHORIZED');
  };
}
