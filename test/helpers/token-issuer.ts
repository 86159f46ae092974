// Test fixture: a small Docker-registry token server (the bearer flow of Docker Hub, ghcr.io
// and quay.io) on 127.0.0.1:0, for running Debian's distribution 2.8 as a token-auth upstream.
//
// Tokens are JWTs signed with a fresh ES256 (P-256) or RS256 key whose self-signed certificate
// (made with openssl) is distribution's `rootcertbundle`. distribution 2.8 finds the signing key
// through the JWT header (registry/auth/token/token.go, VerifySigningKey), in this order:
//   `x5c`: the certificate chain, standard base64 DER, leaf first, verified against the bundle;
//   `jwk`: not used here;
//   `kid`: looked up among the bundle's keys by libtrust key ID: SHA-256 of the key's DER
//          SubjectPublicKeyInfo, first 30 bytes, base32 without padding, in 12 groups of 4
//          joined by ':' (ABCD:EFGH:...). libtrust verifies ES256 signatures as raw r||s
//          (JOSE form, not DER), RS256 as PKCS#1 v1.5.
// Claims as distribution checks them: `iss` = issuer, `aud` = service (one string), `exp`/`nbf`
// within 60 s leeway, `access` = [{type, name, actions}]. Both `x5c` and `kid` are sent unless
// `keyRef` restricts the header to one of them.
//
// Grants: with valid basic credentials every requested pull/push action; anonymously (when
// allowed) pull only; wrong credentials answer 401. GET /token (the docker token protocol) and
// POST /token (OAuth2 password grant, as containerd tries first) are served. Every request is
// recorded (scopes, service, account, status) so tests can count them; issued tokens are kept so
// tests can check that none leaks.
import { execFile } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** One resource and its actions, as in the JWT's `access` claim. */
export interface TokenAccess {
  type: string;
  name: string;
  actions: string[];
}

/** Options of {@link startTokenIssuer}; all optional. */
export interface TokenIssuerOptions {
  /** The `service` the registry is configured with (the token's audience). Default `registry.test`. */
  service?: string;
  /** The `iss` claim. Default `regcache-test-issuer`. */
  issuer?: string;
  /** Signing algorithm. Default ES256. */
  alg?: 'ES256' | 'RS256';
  /** Which key reference the JWT header carries: both (default), only `x5c`, or only `kid`. */
  keyRef?: 'both' | 'x5c' | 'kid';
  /** Accepted basic credentials, user → password. */
  users?: Record<string, string>;
  /** Whether requests without credentials get pull access. Default: true when no users are set. */
  anonymous?: boolean;
  /** `expires_in` of issued tokens, seconds. Default 300. */
  expiresInSeconds?: number;
}

/** One request the token endpoint answered. */
export interface TokenRequest {
  method: string;
  /** Requested scopes, e.g. `repository:library/alpine:pull`. */
  scopes: string[];
  service: string | undefined;
  /** The authenticated user, if basic credentials (or the OAuth2 password grant) were valid. */
  account: string | undefined;
  /** True when credentials were sent (valid or not). */
  sentCredentials: boolean;
  status: number;
  /** What was granted. */
  granted: TokenAccess[];
}

/** A running token issuer. */
export interface TokenIssuer {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** The realm clients are sent to: `<url>/token`. */
  realm: string;
  service: string;
  issuer: string;
  /** PEM file with the signing certificate: distribution's `rootcertbundle`. */
  certFile: string;
  /** libtrust key ID of the signing key. */
  kid: string;
  /** distribution's `auth.token` settings, for startDistribution({ token }). */
  distribution: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** Requests answered so far, oldest first. */
  requests(): TokenRequest[];
  /** Every token handed out over HTTP. */
  issued(): string[];
  /** Signs a token directly (not recorded): e.g. push access for seeding the registry. */
  mint(access: TokenAccess[], subject?: string): string;
  /** `Bearer <token>` granting pull and push on one repository, for seeding. */
  pushAuthorization(repository: string): string;
  /** Closes the server and removes the key material; idempotent. */
  stop(): Promise<void>;
}

/** The libtrust key ID of a public key (see the header comment). */
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const sum = createHash('sha256').update(der).digest().subarray(0, 30);
  const b32 = base32(sum);
  return b32.match(/.{1,4}/g)!.join(':');
}

/** RFC 4648 base32 without padding. */
function base32(buf: Buffer): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Parses `type:name:actions` (the name may contain ':' only in theory; split at both ends). */
export function parseScope(scope: string): TokenAccess | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last <= first) return undefined;
  const type = scope.slice(0, first).replace(/\(.*\)$/, '');
  const name = scope.slice(first + 1, last);
  const actions = scope.slice(last + 1).split(',').filter(Boolean);
  return name ? { type, name, actions } : undefined;
}

/** Makes the key and a self-signed certificate with openssl. */
async function makeKey(dir: string, alg: 'ES256' | 'RS256'): Promise<{ key: KeyObject; cert: X509Certificate; certFile: string }> {
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  const newkey = alg === 'ES256' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  try {
    await execFileAsync('openssl', ['req', '-x509', ...newkey, '-nodes', '-keyout', keyFile, '-out', certFile, '-subj', '/CN=regcache test token issuer', '-days', '1']);
  } catch (err) {
    throw new Error(`token issuer: openssl could not make a key and certificate: ${(err as Error).message}`);
  }
  const key = createPrivateKey(await readFile(keyFile));
  const cert = new X509Certificate(await readFile(certFile));
  return { key, cert, certFile };
}

/** Starts the token issuer on 127.0.0.1:0. */
export async function startTokenIssuer(opts: TokenIssuerOptions = {}): Promise<TokenIssuer> {
  const service = opts.service ?? 'registry.test';
  const issuer = opts.issuer ?? 'regcache-test-issuer';
  const alg = opts.alg ?? 'ES256';
  const keyRef = opts.keyRef ?? 'both';
  const users = opts.users ?? {};
  const anonymous = opts.anonymous ?? Object.keys(users).length === 0;
  const expiresIn = opts.expiresInSeconds ?? 300;

  const dir = await mkdtemp(join(tmpdir(), 'regcache-token-issuer-'));
  let material: Awaited<ReturnType<typeof makeKey>>;
  try {
    material = await makeKey(dir, alg);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const { key, cert, certFile } = material;
  const kid = libtrustKeyId(cert.publicKey);
  const x5c = [cert.raw.toString('base64')];
  const log: TokenRequest[] = [];
  const issued: string[] = [];

  function mint(access: TokenAccess[], subject = ''): string {
    const now = Math.floor(Date.now() / 1000);
    const header: Record<string, unknown> = { typ: 'JWT', alg };
    if (keyRef !== 'x5c') header.kid = kid;
    if (keyRef !== 'kid') header.x5c = x5c;
    const claims = { iss: issuer, sub: subject, aud: service, exp: now + expiresIn, nbf: now - 1, iat: now, jti: randomBytes(12).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = alg === 'ES256' ? sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }) : sign('sha256', Buffer.from(input), key);
    return `${input}.${b64url(signature)}`;
  }

  /** Checks credentials: the user, undefined for none, or false for wrong ones. */
  function authenticate(user: string | undefined, password: string | undefined): string | undefined | false {
    if (user === undefined) return undefined;
    return Object.hasOwn(users, user) && users[user] === password ? user : false;
  }

  function grant(scopes: string[], account: string | undefined): TokenAccess[] {
    const out: TokenAccess[] = [];
    for (const scope of scopes) {
      const a = parseScope(scope);
      if (!a || a.type !== 'repository') continue;
      const allowed = account !== undefined ? ['pull', 'push'] : ['pull'];
      const actions = a.actions.filter((x) => allowed.includes(x));
      if (actions.length > 0) out.push({ type: a.type, name: a.name, actions });
    }
    return out;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://issuer');
    const entry: TokenRequest = { method: req.method ?? '', scopes: [], service: undefined, account: undefined, sentCredentials: false, status: 0, granted: [] };
    const answer = (status: number, body: object, headers: Record<string, string> = {}) => {
      entry.status = status;
      log.push(entry);
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (url.pathname !== '/token') return answer(404, { errors: [{ code: 'NOT_FOUND', message: 'no such endpoint' }] });

    let user: string | undefined;
    let password: string | undefined;
    let params = url.searchParams;
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      if (params.get('grant_type') !== 'password') return answer(400, { error: 'unsupported_grant_type' });
      user = params.get('username') ?? undefined;
      password = params.get('password') ?? undefined;
    } else if (req.method === 'GET') {
      const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
      if (m) {
        const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
        const i = decoded.indexOf(':');
        user = i < 0 ? decoded : decoded.slice(0, i);
        password = i < 0 ? '' : decoded.slice(i + 1);
      }
    } else {
      return answer(405, { errors: [{ code: 'UNSUPPORTED', message: 'GET or POST' }] });
    }
    entry.scopes = params.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    entry.service = params.get('service') ?? undefined;
    entry.sentCredentials = user !== undefined;
    const account = authenticate(user, password);
    const challenge = { 'www-authenticate': `Basic realm="${service}"` };
    if (account === false) return answer(401, { details: 'incorrect username or password' }, challenge);
    if (account === undefined && !anonymous) return answer(401, { details: 'authentication required' }, challenge);
    if (entry.service !== undefined && entry.service !== service) return answer(400, { details: `unknown service ${entry.service}` });
    entry.account = account;
    entry.granted = grant(entry.scopes, account);
    const token = mint(entry.granted, account ?? '');
    issued.push(token);
    const body = { token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() };
    return answer(200, body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(err.message);
    });
  });
  server.keepAliveTimeout = 1000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const realm = `${url}/token`;
  let stopping: Promise<void> | undefined;
  return {
    url,
    realm,
    service,
    issuer,
    certFile,
    kid,
    distribution: { realm, service, issuer, rootCertBundle: certFile },
    requests: () => [...log],
    issued: () => [...issued],
    mint,
    pushAuthorization: (repository) => `Bearer ${mint([{ type: 'repository', name: repository, actions: ['pull', 'push'] }], 'seeder')}`,
    stop: () =>
      (stopping ??= (async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await rm(dir, { recursive: true, force: true });
      })()),
  };
}
