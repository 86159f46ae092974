// Optional HTTP basic authentication against an htpasswd file (bcrypt entries only, as
// distribution; other entries are named at start). An unknown user costs the same bcrypt work as a known one, and a
// verified credential is remembered briefly so that a pull does not run bcrypt per request.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import bcrypt from 'bcryptjs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError } from '../oci/index.js';

const REMEMBER_MS = 5 * 60 * 1000;
const MAX_REMEMBERED = 10_000;

/** A bcrypt hash whole: version, two-digit cost, 22 characters of salt and 31 of hash. */
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;

/** What a hash that is not bcrypt looks like, to name it. */
function hashKind(hash: string): string {
  if (/^\$2[a-z]?\$/.test(hash)) return 'a malformed or truncated bcrypt hash';
  if (hash.startsWith('$apr1$')) return 'an MD5 (apr1) hash';
  if (hash.startsWith('{SHA}')) return 'a SHA-1 hash';
  if (/^\$[156]\$/.test(hash)) return 'a crypt(3) hash';
  if (/^[./A-Za-z0-9]{13}$/.test(hash)) return 'a DES crypt hash';
  return 'not a hash (plain text?)';
}

/** The users of an htpasswd file: bcrypt entries, and a line for each entry refused. */
export interface Htpasswd {
  users: Map<string, string>;
  /** One per user whose entry is not bcrypt: named, with the fix. */
  refused: string[];
}

/** Reads htpasswd text: bcrypt entries are kept; every other entry is named in `refused`. */
export function parseHtpasswd(text: string): Htpasswd {
  const users = new Map<string, string>();
  const refused: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    if (i <= 0) {
      refused.push(`a line without USER:HASH (${JSON.stringify(line.slice(0, 20))})`);
      continue;
    }
    const user = line.slice(0, i);
    const hash = line.slice(i + 1);
    if (BCRYPT.test(hash)) users.set(user, hash);
    else refused.push(`user "${user}" has ${hashKind(hash)}, and only bcrypt entries are accepted (as distribution): htpasswd -B FILE ${user}`);
  }
  return { users, refused };
}

/**
 * Loads an htpasswd file for basic auth; `name` names it in messages (`--htpasswd FILE`). Throws
 * when the file cannot be read or holds no bcrypt entry; `warn` hears of each entry refused.
 */
export function loadHtpasswd(path: string, name: string, warn: (message: string) => void): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EISDIR'
        ? 'is a directory; give the htpasswd file itself'
        : code === 'ENOENT'
          ? 'no such file; create it with htpasswd -Bc FILE USER'
          : code === 'EACCES'
            ? 'permission denied; make it readable by this user'
            : (err as Error).message;
    throw new Error(`${name}: ${why}`);
  }
  const { users, refused } = parseHtpasswd(text);
  if (users.size === 0) {
    throw new Error(`${name}: no bcrypt entry${refused.length ? ` (${refused[0]}${refused.length > 1 ? `; ${refused.length - 1} more` : ''})` : ': the file is empty; add users with htpasswd -B FILE USER'}`);
  }
  for (const r of refused) warn(`${name}: ${r}; that user cannot log in`);
  return users;
}

/** Basic-auth verifier with a short-lived memory of good credentials. */
export class BasicAuth {
  private readonly remembered = new Map<string, number>();
  private readonly pending = new Map<string, Promise<boolean>>();
  private readonly dummyHash: string;

  constructor(private readonly users: Map<string, string>, readonly realm = 'regcache') {
    const cost = Number(users.values().next().value?.slice(4, 6) ?? 10);
    this.dummyHash = bcrypt.hashSync('regcache-no-such-user', cost);
  }

  /**
   * Loads the htpasswd file at `path` (see {@link loadHtpasswd}); `name` names it in messages,
   * `realm` is the realm of the 401 challenge.
   */
  static fromFile(path: string, opts: { realm?: string; name?: string; warn?: (message: string) => void } = {}): BasicAuth {
    const users = loadHtpasswd(path, opts.name ?? path, opts.warn ?? ((m) => process.stderr.write(`regcache: warning: ${m}\n`)));
    return new BasicAuth(users, opts.realm);
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
    const user = i < 0 ? decoded : decoded.slice(0, i);
    const password = i < 0 ? '' : decoded.slice(i + 1);
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
