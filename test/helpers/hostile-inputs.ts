// fast-check arbitraries of hostile requests to the OCI distribution API: for a route template
// fastify registered (`/v2/:name/manifests/:reference`), random and adversarial path parameters
// (dot segments, encoded slashes, NUL, very long segments, unicode, invalid names, digests of
// the wrong algorithm, length or case, upload ids of other repositories), queries, headers
// (Content-Range, Range, Content-Type garbage) and bodies (random bytes and JSON, deep nesting,
// huge arrays, manifests with wrong types and bad descriptors). Values are compact plans
// (printable in a counterexample); render() turns one into the bytes to send.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import type { RouteInfo } from './server-child.js';

/** What exists in the registry before the fuzz run (so that some requests can succeed). */
export interface World {
  /** Blobs pushed into every name of `names`: digest and size. */
  blobs: Array<{ digest: string; size: number; mediaType: string }>;
  /** A manifest tagged `tag` in every name of `names`. */
  manifest: { digest: string; size: number; tag: string };
  /** Repositories that hold the blobs and the manifest. */
  names: string[];
  /** Upload sessions: id and the repository that owns it. */
  uploads: Array<{ id: string; repository: string }>;
}

/**
 * Stand-ins for the digest of the request's own body, replaced once the body is rendered: of the
 * body (sha256, sha512), and of the body with one more byte (a digest that does not match).
 */
export const BODY_DIGESTS = ['BODYDIGESTSHA256', 'BODYDIGESTSHA512', 'BODYDIGESTOTHER'] as const;

/** Replaces the body-digest stand-ins in `s`. */
export function withBodyDigests(s: string, body: Buffer | undefined): string {
  if (!s.includes('BODYDIGEST')) return s;
  const b = body ?? Buffer.alloc(0);
  const d = (alg: string, data: Buffer) => `${alg}:${createHash(alg).update(data).digest('hex')}`;
  return s
    .replaceAll('BODYDIGESTSHA256', d('sha256', b))
    .replaceAll('BODYDIGESTSHA512', d('sha512', b))
    .replaceAll('BODYDIGESTOTHER', d('sha256', Buffer.concat([b, Buffer.from('x')])));
}

/** How a path parameter is written into the path. */
export type Encoding = 'verbatim' | 'component' | 'segments' | 'double';

/** A path parameter's value and its encoding. */
export interface Piece {
  value: string;
  encoding: Encoding;
}

/** A body, described compactly. */
export type BodyPlan =
  | { kind: 'none' }
  | { kind: 'bytes'; hex: string }
  | { kind: 'text'; text: string }
  | { kind: 'json'; value: unknown }
  | { kind: 'manifest'; doc: Record<string, unknown>; indent: number }
  | { kind: 'deep'; depth: number; open: string; close: string }
  | { kind: 'hugeArray'; count: number; digest: string }
  | { kind: 'oversize'; bytes: number };

/** A request sent with undici. */
export interface HttpPlan {
  transport: 'undici';
  port: 'registry' | 'cache';
  method: string;
  /** The route template the path was made from ('' for a path not made from a route). */
  route: string;
  params: Record<string, Piece>;
  /** A change to the rendered path (dot segments, doubled slashes, ...), or none. */
  mutation: string;
  query: string;
  headers: Record<string, string>;
  body: BodyPlan;
  /** Send the body with Transfer-Encoding: chunked instead of a Content-Length. */
  chunked: boolean;
  /** Length of an X-Padding header (0: none); past 16 KiB of headers node refuses the request. */
  padding: number;
}

/** A request written byte by byte on a socket: what no well-behaved client sends. */
export interface RawPlan {
  transport: 'raw';
  port: 'registry' | 'cache';
  kind: string;
  /** Everything up to the body: request line and headers (without the final CRLF CRLF when `unterminated`). */
  head: string;
  body: string;
  /** The request is cut short on purpose (the server may drop it without an answer). */
  incomplete: boolean;
}

/** One repository pushing an upload session, another trying to use it. */
export interface CrossUploadPlan {
  transport: 'cross-upload';
  owner: string;
  intruder: string;
  intruderName: Piece;
  method: 'GET' | 'PATCH' | 'PUT' | 'DELETE';
  chunk: string;
}

/** A chunked upload with odd chunks and ranges, completed with a right or wrong digest. */
export interface UploadFlowPlan {
  transport: 'upload-flow';
  name: string;
  chunks: Array<{ hex: string; range: 'none' | 'correct' | 'random'; start: number; end: number; chunked: boolean }>;
  /** A last chunk sent with the completing PUT. */
  last: string | null;
  digest: 'sha256' | 'sha512' | 'wrong' | 'upper' | 'missing' | 'garbage';
  finalRange: 'none' | 'correct' | 'random';
}

/** Any fuzz case. */
export type Plan = HttpPlan | RawPlan | CrossUploadPlan | UploadFlowPlan;

/** A request ready to send. */
export interface Rendered {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const MEDIA_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, 'application/vnd.oci.image.config.v1+json', 'application/vnd.oci.image.layer.v1.tar+gzip'];

const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const sha256Of = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

/** Random strings over characters that matter in paths and names. */
const pathish = fc.string({ unit: fc.constantFrom(...'aZ09./%_-:@\\?#;=+ ~'), maxLength: 40 });
/** Any code points, including control characters, NUL and astral ones. */
const anyString = fc.string({ unit: 'binary', maxLength: 40 });

function names(world: World): fc.Arbitrary<string> {
  const component = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
  const valid = fc.stringMatching(new RegExp(`^${component}(?:/${component}){0,3}$`)).filter((n) => n.length <= 255);
  const adversarial = fc.constantFrom(
    '..',
    '.',
    '../..',
    'a/../b',
    'a/./b',
    '../../../../../../etc/passwd',
    'fuzz/owner/..',
    'fuzz/../fuzz/owner',
    'a//b',
    '/a',
    'a/',
    '%2e%2e',
    '%2E%2E/x',
    'a%2F..%2F..%2Fb',
    '..%2F..%2F..%2Fetc',
    '%252e%252e',
    'a%00b',
    '%00',
    'a\u0000b',
    '_layers',
    'a/_tags',
    'a/_manifests/sha256',
    'fuzz/owner/_layers',
    '_catalog',
    'A',
    'Fuzz/Owner',
    'a:b',
    'a@b',
    'a b',
    'a?b=c',
    'a#b',
    'a;b',
    'a\\b',
    '\u00e9',
    '\u65e5\u672c/\u8a9e',
    '\u{1f4a5}',
    'a\u202eb',
    'a'.repeat(255),
    'a'.repeat(256),
    'a'.repeat(300),
    `${'a/'.repeat(127)}a`,
    `${'ab/'.repeat(100)}a`,
    'a'.repeat(4097),
    'a'.repeat(20_000),
    'a__b',
    'a___b',
    'a--b',
    'a..b',
    '-a',
    'a-',
    '_a',
    'a.',
    'v2',
    'blobs/uploads',
    'a/blobs/uploads',
    'a/manifests/x',
  );
  return fc.oneof(
    { arbitrary: fc.constantFrom(...world.names, 'fuzz/other', 'library/alpine', 'a'), weight: 10 },
    { arbitrary: valid, weight: 3 },
    { arbitrary: adversarial, weight: 4 },
    { arbitrary: pathish, weight: 1 },
    { arbitrary: anyString, weight: 1 },
  );
}

function digests(world: World): fc.Arbitrary<string> {
  const known = world.blobs.map((b) => b.digest).concat(world.manifest.digest);
  return fc.oneof(
    { arbitrary: fc.constantFrom(...known), weight: 6 },
    { arbitrary: fc.constantFrom(...BODY_DIGESTS), weight: 4 },
    { arbitrary: hex(64).map((h) => `sha256:${h}`), weight: 2 },
    { arbitrary: hex(128).map((h) => `sha512:${h}`), weight: 1 },
    { arbitrary: fc.constantFrom(...known).map((d) => d.toUpperCase()), weight: 1 },
    { arbitrary: fc.constantFrom(...known).map((d) => d.replace('sha256:', 'SHA256:')), weight: 1 },
    { arbitrary: fc.integer({ min: 0, max: 200 }).chain((n) => hex(n).map((h) => `sha256:${h}`)), weight: 2 },
    { arbitrary: hex(64).map((h) => `sha512:${h}`), weight: 1 },
    { arbitrary: hex(128).map((h) => `sha256:${h}`), weight: 1 },
    {
      arbitrary: fc.constantFrom(
        'md5:d41d8cd98f00b204e9800998ecf8427e',
        `sha384:${'a'.repeat(96)}`,
        `sha1:${'a'.repeat(40)}`,
        `sha256:${'g'.repeat(64)}`,
        'sha256:',
        ':',
        '',
        'sha256',
        `sha256:../../../../${'a'.repeat(40)}`,
        `sha256:${'a'.repeat(10_000)}`,
        `sha256%3A${'a'.repeat(64)}`,
        `sha256:${'a'.repeat(64)}%00`,
        `sha256:${'a'.repeat(64)}\n`,
        `sha256+b64:${'A'.repeat(43)}=`,
        `sha256:${'a'.repeat(63)}/`,
        `sha256:/${'a'.repeat(63)}`,
        `sha256:${'a'.repeat(32)}/../${'a'.repeat(29)}`,
        `SHA256:${'A'.repeat(64)}`,
      ),
      weight: 3,
    },
    { arbitrary: pathish, weight: 1 },
    { arbitrary: anyString, weight: 1 },
  );
}

function references(world: World): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(world.manifest.tag, 'latest', 'v1', 'v2'), weight: 5 },
    { arbitrary: fc.constantFrom(...BODY_DIGESTS, 'BODYDIGESTSHA256'), weight: 5 },
    { arbitrary: fc.stringMatching(/^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/), weight: 3 },
    { arbitrary: digests(world), weight: 4 },
    {
      arbitrary: fc.constantFrom(
        'a'.repeat(128),
        'a'.repeat(129),
        '.hidden',
        '-x',
        '..',
        '.',
        'a/b',
        'a:b',
        '_tags',
        '..%2F..%2Fx',
        '%2e%2e',
        'v1%00',
        '\u00e9',
        'a'.repeat(5000),
      ),
      weight: 3,
    },
    { arbitrary: pathish, weight: 1 },
    { arbitrary: anyString, weight: 1 },
  );
}

function uploadIds(world: World): fc.Arbitrary<string> {
  const ids = world.uploads.map((u) => u.id);
  return fc.oneof(
    { arbitrary: fc.constantFrom(...ids), weight: 6 },
    { arbitrary: fc.constantFrom(...ids).map((id) => id.toUpperCase()), weight: 1 },
    { arbitrary: fc.constantFrom(...ids).map((id) => `${id}x`), weight: 1 },
    { arbitrary: fc.uuid(), weight: 1 },
    {
      arbitrary: fc.constantFrom(
        '..',
        '.',
        '%2e%2e',
        '..%2F..%2Fblobs',
        '../../blobs/sha256',
        `../${ids[0]}`,
        'a'.repeat(5000),
        '',
        ' ',
        '00000000-0000-0000-0000-000000000000',
        'session.json',
        'data',
      ),
      weight: 2,
    },
    { arbitrary: pathish, weight: 1 },
    { arbitrary: anyString, weight: 1 },
  );
}

const encodings: fc.Arbitrary<Encoding> = fc.oneof(
  { arbitrary: fc.constant<Encoding>('verbatim'), weight: 6 },
  { arbitrary: fc.constantFrom<Encoding>('component', 'segments', 'double'), weight: 1 },
);

function pieceFor(param: string, world: World): fc.Arbitrary<Piece> {
  const values = param === 'name' ? names(world) : param === 'digest' ? digests(world) : param === 'reference' ? references(world) : param === 'id' ? uploadIds(world) : pathish;
  return fc.record({ value: values, encoding: encodings });
}

/** Percent-encodes what cannot appear in an HTTP request line (undici refuses it too). */
function requestLineSafe(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    out += c > 0x20 && c < 0x7f ? ch : encodeURIComponent(ch).replace(/%$/, '%25');
  }
  return out;
}

/** Writes a path parameter as the encoding asks. */
export function renderPiece(p: Piece): string {
  switch (p.encoding) {
    case 'verbatim':
      return requestLineSafe(p.value);
    case 'component':
      return encodeURIComponent(p.value);
    case 'segments':
      return p.value.split('/').map(encodeURIComponent).join('/');
    case 'double':
      return encodeURIComponent(encodeURIComponent(p.value));
  }
}

/** Changes made to a rendered path after the parameters are in. */
const MUTATIONS = ['dot-before', 'dotdot-before', 'double-slash', 'trailing-slash', 'encoded-slash-v2', 'dotdot-encoded', 'nul', 'backslash', 'upper-v2', 'semicolon', 'fragment', 'long-tail', 'prefix-dotdot'] as const;

function mutate(path: string, mutation: string): string {
  const lastSlash = path.lastIndexOf('/');
  switch (mutation) {
    case 'dot-before':
      return `${path.slice(0, lastSlash)}/.${path.slice(lastSlash)}`;
    case 'dotdot-before':
      return `${path.slice(0, lastSlash)}/x/..${path.slice(lastSlash)}`;
    case 'double-slash':
      return path.replace('/v2/', '/v2//').replace(/\/(manifests|blobs|tags)\//, '//$1//');
    case 'trailing-slash':
      return `${path}/`;
    case 'encoded-slash-v2':
      return path.replace('/v2/', '/v2%2F');
    case 'dotdot-encoded':
      return `${path.slice(0, lastSlash)}/%2e%2e/%2E%2E${path.slice(lastSlash)}`;
    case 'nul':
      return `${path}%00`;
    case 'backslash':
      return path.replaceAll('/', '\\').replace(/^\\/, '/');
    case 'upper-v2':
      return path.replace('/v2/', '/V2/');
    case 'semicolon':
      return `${path};jsessionid=x`;
    case 'fragment':
      return `${path}#frag`;
    case 'long-tail':
      return `${path}${'/x'.repeat(2000)}`;
    case 'prefix-dotdot':
      return `/v2/../..${path}`;
    default:
      return path;
  }
}

function queries(route: string, world: World): fc.Arbitrary<string> {
  const q = (k: string, v: fc.Arbitrary<string>) => v.map((x) => `${k}=${encodeURIComponent(x)}`);
  const n = fc.oneof(fc.integer({ min: -5, max: 100 }).map(String), fc.constantFrom('', 'abc', '1e3', '99999999999999999999', '0x10', '1.5', '-0', ' 1', 'NaN', 'Infinity'));
  const garbage = fc.constantFrom('', '%', '%zz', '&&&', '=x', 'a[b]=c', 'digest', 'digest=', 'digest&digest', `digest=${'a'.repeat(5000)}`, '__proto__=x', 'constructor[prototype]=x');
  const specific: Array<fc.Arbitrary<string>> = [garbage];
  if (route.includes('uploads')) {
    specific.push(
      q('digest', digests(world)),
      fc.constantFrom(...BODY_DIGESTS).map((t) => `digest=${t}`),
      fc.constantFrom(...BODY_DIGESTS).map((t) => `digest=${t}`),
      fc.tuple(q('mount', digests(world)), q('from', names(world))).map(([a, b]) => `${a}&${b}`),
      q('mount', digests(world)),
      fc.tuple(q('digest', digests(world)), q('digest', digests(world))).map(([a, b]) => `${a}&${b}`),
      fc.tuple(q('digest', digests(world)), q('mount', digests(world))).map(([a, b]) => `${a}&${b}`),
    );
  }
  if (route.includes('tags/list') || route.includes('_catalog')) specific.push(fc.tuple(q('n', n), q('last', fc.oneof(pathish, anyString))).map(([a, b]) => `${a}&${b}`), q('n', n));
  if (route.includes('referrers')) specific.push(q('artifactType', fc.oneof(fc.constantFrom(...MEDIA_TYPES), anyString)));
  specific.push(q('ns', fc.constantFrom('docker.io', 'DOCKER.IO', 'index.docker.io', 'unknown.example', '127.0.0.1:1', '', '..', 'a'.repeat(300))));
  return fc.oneof({ arbitrary: fc.constant(''), weight: 3 }, { arbitrary: fc.oneof(...specific), weight: route.includes('uploads') ? 6 : 2 }).map((s) => (s ? `?${s}` : ''));
}

const headerValues = {
  'content-type': fc.constantFrom(OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST, 'application/json', 'application/octet-stream', 'text/plain', ';;;', 'application/vnd.oci.image.manifest.v1+json; charset=utf-16', `${OCI_MANIFEST}, ${OCI_INDEX}`, 'APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', '*/*', 'a'.repeat(8000), ''),
  'content-range': fc.oneof(
    fc.tuple(fc.integer({ min: -1, max: 5000 }), fc.integer({ min: -1, max: 5000 })).map(([a, b]) => `${a}-${b}`),
    fc.constantFrom('0-0', 'bytes=0-9', 'bytes 0-9/10', '5-2', '-1-3', '99999999999999999999-99999999999999999999', '9007199254740993-9007199254740994', 'abc', '0-', '-', '', '0-9/*', '0-9/abc', '1-2-3', '\u00e9'),
  ),
  range: fc.oneof(
    fc.tuple(fc.integer({ min: -1, max: 3000 }), fc.integer({ min: -1, max: 3000 })).map(([a, b]) => `bytes=${a}-${b}`),
    fc.constantFrom('bytes=0-0', 'bytes=-5', 'bytes=5-', 'bytes=0-1,2-3', 'bytes=x', 'items=0-1', 'bytes=99999999999999999999-', 'bytes=-99999999999999999999', 'bytes=', 'bytes=-0', 'bytes=0-', 'bytes 0-1', ''),
  ),
  accept: fc.constantFrom(OCI_MANIFEST, `${OCI_INDEX}, ${DOCKER_MANIFEST}`, '*/*', 'text/html', 'a'.repeat(4000), ''),
  authorization: fc.constantFrom('Basic Zm9vOmJhcg==', 'Bearer x', 'Basic', '\u00ff'),
  'if-none-match': fc.constantFrom('"sha256:x"', '*', ''),
  'docker-upload-uuid': fc.uuid(),
  connection: fc.constantFrom('close', 'keep-alive'),
};

const paddings = fc.oneof({ arbitrary: fc.constant(0), weight: 9 }, { arbitrary: fc.integer({ min: 1, max: 20_000 }), weight: 1 });

/** A few headers at a time (most requests carry none or one odd header, as most clients do). */
function headers(): fc.Arbitrary<Record<string, string>> {
  const keys = Object.keys(headerValues) as Array<keyof typeof headerValues>;
  return fc
    .subarray(keys, { maxLength: 3 })
    .chain((ks) => fc.tuple(...ks.map((k) => headerValues[k].map((v) => [k, v] as const))))
    .map((entries) => Object.fromEntries(entries));
}

/** Headers of a manifest push: mostly a manifest Content-Type (or none), sometimes anything. */
function manifestHeaders(): fc.Arbitrary<Record<string, string>> {
  return fc.oneof(
    { arbitrary: fc.constant({}), weight: 2 },
    { arbitrary: fc.constantFrom(OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX).map((t) => ({ 'content-type': t })), weight: 2 },
    { arbitrary: headers(), weight: 2 },
  );
}

function descriptor(world: World): fc.Arbitrary<unknown> {
  const knownBlob = fc.constantFrom(...world.blobs);
  const good = knownBlob.map((b) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size }));
  const wrongType = fc.constantFrom<unknown>(null, 5, 'x', [], true, {}, { digest: 5 }, { mediaType: [], digest: world.blobs[0]!.digest, size: 1 });
  const mutated = fc
    .record(
      {
        mediaType: fc.oneof(fc.constantFrom(...MEDIA_TYPES), fc.constantFrom<unknown>('', 5, null)),
        digest: fc.oneof(knownBlob.map((b) => b.digest), digests(world), fc.constantFrom<unknown>(5, null, [])),
        size: fc.oneof(knownBlob.map((b) => b.size), fc.constantFrom<unknown>(-1, 1.5, '5', 2 ** 53, 1e308, null, 0, Number.MAX_SAFE_INTEGER)),
        urls: fc.constantFrom<unknown>(['http://example.invalid/x'], [5], 'x', []),
        annotations: fc.constantFrom<unknown>({ a: 'b' }, { a: 5 }, [], 'x', { ['__proto__']: 'x' }),
        platform: fc.constantFrom<unknown>({ os: 'linux', architecture: 'amd64' }, 'x', null),
        artifactType: fc.constantFrom<unknown>('application/x', 5),
      },
      { requiredKeys: [] },
    );
  return fc.oneof({ arbitrary: good, weight: 6 }, { arbitrary: mutated, weight: 3 }, { arbitrary: wrongType, weight: 1 });
}

/** Changes to a valid manifest: one field made wrong (a type, a digest, a size, a media type). */
const MANIFEST_MUTATIONS: ReadonlyArray<[string, (doc: Record<string, unknown>, v: unknown) => void]> = [
  ['schemaVersion', (d, v) => (d.schemaVersion = v)],
  ['mediaType', (d, v) => (d.mediaType = v)],
  ['drop mediaType', (d) => delete d.mediaType],
  ['config', (d, v) => (d.config = v)],
  ['drop config', (d) => delete d.config],
  ['layers', (d, v) => (d.layers = v)],
  ['layer', (d, v) => ((d.layers as unknown[] | undefined)?.length ? ((d.layers as unknown[])[0] = v) : (d.layers = [v]))],
  ['config digest', (d, v) => ((d.config as Record<string, unknown>).digest = v)],
  ['config size', (d, v) => ((d.config as Record<string, unknown>).size = v)],
  ['layer digest', (d, v) => (d.layers as Array<Record<string, unknown>>).forEach((l) => (l.digest = v))],
  ['layer size', (d, v) => (d.layers as Array<Record<string, unknown>>).forEach((l) => (l.size = v))],
  ['layer mediaType', (d, v) => (d.layers as Array<Record<string, unknown>>).forEach((l) => (l.mediaType = v))],
  ['manifests', (d, v) => (d.manifests = v)],
  ['subject', (d, v) => (d.subject = v)],
  ['annotations', (d, v) => (d.annotations = v)],
  ['artifactType', (d, v) => (d.artifactType = v)],
  ['extra', (d, v) => (d.extra = v)],
];

const oddValues = fc.oneof(
  fc.constantFrom<unknown>(null, 5, -1, 1.5, '5', '', true, [], {}, [null], 2 ** 53, 1e308, '\u0000', { __proto__: 'x' }, 'sha256:', OCI_INDEX, DOCKER_LIST, 'application/json'),
  fc.jsonValue({ maxDepth: 2 }),
);

/** A valid image manifest or index over the world's content, with zero to three fields made wrong. */
function manifestDoc(world: World): fc.Arbitrary<Record<string, unknown>> {
  const [config, ...layers] = world.blobs;
  const desc = (b: { mediaType: string; digest: string; size: number }) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifestDesc = { mediaType: OCI_MANIFEST, digest: world.manifest.digest, size: world.manifest.size };
  const image = fc.record({
    mediaType: fc.constantFrom(OCI_MANIFEST, DOCKER_MANIFEST, undefined),
    layers: fc.subarray(layers),
    subject: fc.option(fc.constant(manifestDesc), { freq: 4 }),
    annotations: fc.option(fc.dictionary(fc.string({ maxLength: 20 }), fc.string({ maxLength: 40 }), { maxKeys: 3 }), { freq: 3 }),
    artifactType: fc.option(fc.constantFrom('application/vnd.example+json', 'application/vnd.oci.empty.v1+json'), { freq: 4 }),
    nonce: fc.integer(),
  }).map(({ mediaType, layers: ls, subject, annotations, artifactType, nonce }) => {
    const doc: Record<string, unknown> = { schemaVersion: 2 };
    if (mediaType) doc.mediaType = mediaType;
    doc.config = desc(config!);
    doc.layers = ls.map(desc);
    if (subject) doc.subject = subject;
    if (annotations) doc.annotations = { ...annotations, nonce: String(nonce) };
    else doc.annotations = { nonce: String(nonce) };
    if (artifactType) doc.artifactType = artifactType;
    return doc;
  });
  const index = fc.record({ mediaType: fc.constantFrom(OCI_INDEX, DOCKER_LIST, undefined), nonce: fc.integer() }).map(({ mediaType, nonce }) => {
    const doc: Record<string, unknown> = { schemaVersion: 2 };
    if (mediaType) doc.mediaType = mediaType;
    doc.manifests = [{ ...manifestDesc, platform: { os: 'linux', architecture: 'amd64' } }];
    doc.annotations = { nonce: String(nonce) };
    return doc;
  });
  const mutation = fc.tuple(fc.nat(MANIFEST_MUTATIONS.length - 1), fc.oneof(oddValues, digests(world), descriptor(world)));
  return fc.tuple(fc.oneof({ arbitrary: image, weight: 4 }, { arbitrary: index, weight: 1 }), fc.oneof({ arbitrary: fc.constant([]), weight: 3 }, { arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }), weight: 2 })).map(([doc, muts]) => {
    for (const [i, v] of muts) {
      try {
        MANIFEST_MUTATIONS[i]![1](doc, v);
      } catch {
        // the field to change is not there (an index has no layers): leave the document as is
      }
    }
    return doc;
  });
}

/** Bodies, weighted for the route: manifests for manifest PUTs, bytes for uploads. */
function bodies(world: World, route = ''): fc.Arbitrary<BodyPlan> {
  const manifests = route.includes('/manifests/') ? 30 : 4;
  const bytes = route.includes('/uploads/') ? 12 : 2;
  return fc.oneof(
    { arbitrary: fc.constant<BodyPlan>({ kind: 'none' }), weight: 4 },
    { arbitrary: fc.uint8Array({ maxLength: 2048 }).map((b): BodyPlan => ({ kind: 'bytes', hex: Buffer.from(b).toString('hex') })), weight: bytes },
    { arbitrary: fc.constantFrom('', 'x', '{}', '[]', 'null', '{"schemaVersion":2}', '\u0000', '\ufeff{"schemaVersion":2,"config":{}}').map((text): BodyPlan => ({ kind: 'text', text })), weight: 2 },
    { arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value): BodyPlan => ({ kind: 'json', value })), weight: 2 },
    { arbitrary: fc.tuple(manifestDoc(world), fc.constantFrom(0, 0, 1, 3)).map(([doc, indent]): BodyPlan => ({ kind: 'manifest', doc, indent })), weight: manifests },
    {
      arbitrary: fc.tuple(fc.constantFrom(100, 5_000, 100_000, 1_000_000), fc.constantFrom(['[', ']'], ['{"a":', '}'], ['{"schemaVersion":2,"config":', '}'])).map(
        ([depth, [open, close]]): BodyPlan => ({ kind: 'deep', depth, open: open!, close: close! }),
      ),
      weight: 1,
    },
    { arbitrary: fc.tuple(fc.constantFrom(1_000, 20_000, 40_000), fc.constantFrom(...world.blobs.map((b) => b.digest))).map(([count, digest]): BodyPlan => ({ kind: 'hugeArray', count, digest })), weight: 1 },
    { arbitrary: fc.constantFrom(4 * 1024 * 1024 + 1, 6 * 1024 * 1024).map((bytes): BodyPlan => ({ kind: 'oversize', bytes })), weight: 1 },
  );
}

/** The bytes of a body plan. */
export function renderBody(b: BodyPlan, world: World): Buffer | undefined {
  switch (b.kind) {
    case 'none':
      return undefined;
    case 'bytes':
      return Buffer.from(b.hex, 'hex');
    case 'text':
      return Buffer.from(b.text);
    case 'json':
      return Buffer.from(JSON.stringify(b.value) ?? 'null');
    case 'manifest':
      return Buffer.from(JSON.stringify(b.doc, null, b.indent));
    case 'deep':
      return Buffer.from(b.open.repeat(b.depth) + '1' + b.close.repeat(b.depth));
    case 'hugeArray': {
      const blob = world.blobs.find((x) => x.digest === b.digest)!;
      const layer = JSON.stringify({ mediaType: blob.mediaType, digest: blob.digest, size: blob.size });
      const config = JSON.stringify({ mediaType: 'application/vnd.oci.image.config.v1+json', digest: blob.digest, size: blob.size });
      return Buffer.from(`{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","config":${config},"layers":[${Array(b.count).fill(layer).join(',')}]}`);
    }
    case 'oversize':
      return Buffer.alloc(b.bytes, 0x20);
  }
}

/** Methods fastify knows (a route's own, or another one on the same path). */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', 'SEARCH'];

function httpPlan(port: 'registry' | 'cache', route: RouteInfo, world: World): fc.Arbitrary<HttpPlan> {
  const params = (route.url.match(/:[a-z]+/g) ?? []).map((p) => p.slice(1));
  const paramArb = fc.record(Object.fromEntries(params.map((p) => [p, pieceFor(p, world)]))) as fc.Arbitrary<Record<string, Piece>>;
  return fc.record({
    transport: fc.constant('undici' as const),
    port: fc.constant(port),
    method: fc.oneof({ arbitrary: fc.constant(route.method), weight: 9 }, { arbitrary: fc.constantFrom(...METHODS), weight: 1 }),
    route: fc.constant(route.url),
    params: paramArb,
    mutation: fc.oneof({ arbitrary: fc.constant(''), weight: 6 }, { arbitrary: fc.constantFrom(...MUTATIONS), weight: 1 }),
    query: queries(route.url, world),
    headers: route.method === 'PUT' && route.url.includes('/manifests/') ? manifestHeaders() : headers(),
    body: bodies(world, route.url),
    chunked: fc.boolean(),
    padding: paddings,
  });
}

/** A path not made from any route. */
function strayPlan(port: 'registry' | 'cache', world: World): fc.Arbitrary<HttpPlan> {
  return fc.record({
    transport: fc.constant('undici' as const),
    port: fc.constant(port),
    method: fc.constantFrom(...METHODS),
    route: fc.constant(''),
    params: fc.record({ path: fc.record({ value: fc.oneof(pathish, anyString, fc.constantFrom('/v2', '/v2/..', '/v2/_catalog/x', '/v1/', '/', '//', '/v2/a/blobs/', '/v2/a/manifests/', '/v2/a/tags/list/x', '/_regcache/stats/../../etc', '/metrics%00', '/../../../etc/passwd', '/v2/%2e%2e/%2e%2e/etc/passwd')), encoding: fc.constant<Encoding>('verbatim') }) }),
    mutation: fc.constantFrom(...MUTATIONS),
    query: queries('', world),
    headers: headers(),
    body: fc.constant<BodyPlan>({ kind: 'none' }),
    chunked: fc.constant(false),
    padding: paddings,
  });
}

/** Renders an HTTP plan into a request (path with parameters, mutation and query). */
export function renderHttp(p: HttpPlan, world: World): Rendered {
  let path: string;
  if (p.route === '') {
    const raw = renderPiece(p.params.path!);
    path = raw.startsWith('/') ? raw : `/${raw}`;
  } else {
    path = p.route.replace(/:([a-z]+)/g, (_, k: string) => renderPiece(p.params[k]!));
  }
  const body = renderBody(p.body, world);
  path = withBodyDigests(mutate(path, p.mutation) + p.query, body);
  const headers = p.padding > 0 ? { ...p.headers, 'x-padding': 'p'.repeat(p.padding) } : p.headers;
  return { method: p.method, path, headers, body };
}

const NO_HOST = new Set(['no-host', 'two-hosts', 'pipelined', 'http-1.0', 'empty', 'garbage', 'half-request-line']);

function rawPlan(port: 'registry' | 'cache', world: World): fc.Arbitrary<RawPlan> {
  const name = world.names[0]!;
  const d = world.blobs[0]!.digest;
  const plans: Array<[string, string, string, boolean]> = [
    // [kind, head (request line and headers, without the blank line), body, incomplete]
    ['nul-in-path', `GET /v2/a\u0000b/tags/list HTTP/1.1`, '', false],
    ['space-in-path', `GET /v2/a b/tags/list HTTP/1.1`, '', false],
    ['utf8-in-path', `GET /v2/\u00e9\u65e5/tags/list HTTP/1.1`, '', false],
    ['dotdot-raw', `GET /v2/../../../../etc/passwd HTTP/1.1`, '', false],
    ['dotdot-in-name', `GET /v2/${name}/../../../../etc/tags/list HTTP/1.1`, '', false],
    ['absolute-form', `GET http://evil.example/v2/ HTTP/1.1`, '', false],
    ['asterisk-form', `OPTIONS * HTTP/1.1`, '', false],
    ['no-leading-slash', `GET v2/ HTTP/1.1`, '', false],
    ['long-path', `GET /v2/${'a'.repeat(20_000)}/tags/list HTTP/1.1`, '', false],
    ['long-header', `GET /v2/ HTTP/1.1\r\nX-Pad: ${'p'.repeat(20_000)}`, '', false],
    ['many-headers', `GET /v2/ HTTP/1.1\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`).join('\r\n')}`, '', false],
    ['huge-content-length', `PUT /v2/${name}/manifests/huge HTTP/1.1\r\nContent-Type: ${OCI_MANIFEST}\r\nContent-Length: 99999999999999999999`, '{}', true],
    ['unsafe-content-length', `PUT /v2/${name}/manifests/huge HTTP/1.1\r\nContent-Type: ${OCI_MANIFEST}\r\nContent-Length: 9007199254740993`, '{}', true],
    ['big-content-length', `POST /v2/${name}/blobs/uploads/?digest=${d} HTTP/1.1\r\nContent-Length: 1000000000000`, 'abc', true],
    ['manifest-content-length-over-limit', `PUT /v2/${name}/manifests/big HTTP/1.1\r\nContent-Type: ${OCI_MANIFEST}\r\nContent-Length: 1000000000`, '{', true],
    ['negative-content-length', `PUT /v2/${name}/manifests/x HTTP/1.1\r\nContent-Length: -1`, '', false],
    ['duplicate-content-length', `PUT /v2/${name}/manifests/x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3`, '{}', false],
    ['content-length-and-chunked', `PUT /v2/${name}/manifests/x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked`, '0\r\n\r\n', false],
    ['bad-transfer-encoding', `PATCH /v2/${name}/blobs/uploads/${world.uploads[0]!.id} HTTP/1.1\r\nTransfer-Encoding: gzip, identity`, 'abc', false],
    ['bad-chunk-size', `PATCH /v2/${name}/blobs/uploads/${world.uploads[0]!.id} HTTP/1.1\r\nTransfer-Encoding: chunked`, 'zz\r\nabc\r\n0\r\n\r\n', false],
    ['huge-chunk-size', `PUT /v2/${name}/manifests/x HTTP/1.1\r\nContent-Type: ${OCI_MANIFEST}\r\nTransfer-Encoding: chunked`, 'ffffffffffffffffff\r\nabc', true],
    ['truncated-chunks', `PUT /v2/${name}/manifests/x HTTP/1.1\r\nContent-Type: ${OCI_MANIFEST}\r\nTransfer-Encoding: chunked`, '5\r\n{"sch', true],
    ['header-without-colon', `GET /v2/ HTTP/1.1\r\nNoColonHere`, '', false],
    ['obs-fold', `GET /v2/ HTTP/1.1\r\nX-A: a\r\n  folded`, '', false],
    ['http-1.0', `GET /v2/ HTTP/1.0`, '', false],
    ['http-2.0-line', `GET /v2/ HTTP/2.0`, '', false],
    ['http-9', `GET /v2/ HTTP/9.9`, '', false],
    ['lowercase-method', `get /v2/ HTTP/1.1`, '', false],
    ['unknown-method', `BREW /v2/ HTTP/1.1`, '', false],
    ['connect', `CONNECT 127.0.0.1:22 HTTP/1.1`, '', false],
    ['upgrade', `GET /v2/ HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket`, '', false],
    ['expect-continue', `PUT /v2/${name}/manifests/x HTTP/1.1\r\nContent-Type: ${OCI_MANIFEST}\r\nExpect: 100-continue\r\nContent-Length: 2`, '{}', false],
    ['expect-garbage', `PUT /v2/${name}/manifests/x HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 2`, '{}', false],
    ['lf-only', `GET /v2/ HTTP/1.1\nX-A: b`, '', false],
    ['cr-in-header', `GET /v2/ HTTP/1.1\r\nX-A: a\rb`, '', false],
    ['nul-in-header', `GET /v2/ HTTP/1.1\r\nX-A: a\u0000b`, '', false],
    ['unterminated-head', `GET /v2/ HTTP/1.1\r\nX-A: a`, '', true],
    ['half-request-line', `GET /v2/`, '', true],
    ['empty', '', '', true],
    ['garbage', '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u01fc\u0003\u0003', '', true],
    ['pipelined', `GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/${'..'}/x HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/_catalog?n=-1 HTTP/1.1`, '', false],
    ['no-host', `GET /v2/ HTTP/1.1`, '', false],
    ['two-hosts', `GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b`, '', false],
  ];
  // Every request but those about the Host header itself names one, as HTTP/1.1 requires.
  const withHost = (kind: string, head: string) => (NO_HOST.has(kind) || !head.includes(' HTTP/1.1') ? head : head.replace(' HTTP/1.1', ' HTTP/1.1\r\nHost: 127.0.0.1'));
  return fc.constantFrom(...plans).map(([kind, head, body, incomplete]): RawPlan => ({ transport: 'raw', port, kind, head: withHost(kind, head), body, incomplete }));
}

function crossUploadPlan(world: World): fc.Arbitrary<CrossUploadPlan> {
  const component = '[a-z0-9]+(?:[._-][a-z0-9]+)*';
  const valid = fc.stringMatching(new RegExp(`^${component}(?:/${component}){0,2}$`)).filter((n) => n.length <= 200);
  return fc
    .record({
      transport: fc.constant('cross-upload' as const),
      owner: fc.oneof(fc.constantFrom(...world.names), valid),
      intruder: fc.oneof(fc.constantFrom(...world.names, 'fuzz/intruder'), valid),
      intruderName: fc.constant<Piece>({ value: '', encoding: 'verbatim' }),
      method: fc.constantFrom('GET', 'PATCH', 'PUT', 'DELETE'),
      chunk: fc.string({ maxLength: 64 }),
      encoding: encodings,
    })
    .filter((p) => p.owner !== p.intruder)
    .map(({ encoding, ...p }) => ({ ...p, intruderName: { value: p.intruder, encoding: encoding === 'double' ? 'verbatim' : encoding } }));
}

function uploadFlowPlan(world: World): fc.Arbitrary<UploadFlowPlan> {
  const bytes = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ minLength: 1000, maxLength: 70_000 })).map((b) => Buffer.from(b).toString('hex'));
  return fc.record({
    transport: fc.constant('upload-flow' as const),
    name: fc.oneof({ arbitrary: fc.constantFrom(...world.names, 'fuzz/flow'), weight: 4 }, { arbitrary: names(world), weight: 1 }),
    chunks: fc.array(
      fc.record({
        hex: bytes,
        range: fc.constantFrom('none', 'correct', 'correct', 'random'),
        start: fc.integer({ min: -1, max: 80_000 }),
        end: fc.integer({ min: -1, max: 80_000 }),
        chunked: fc.boolean(),
      }),
      { maxLength: 4 },
    ),
    last: fc.option(bytes, { freq: 3 }),
    digest: fc.constantFrom('sha256', 'sha256', 'sha512', 'wrong', 'upper', 'missing', 'garbage'),
    finalRange: fc.constantFrom('none', 'none', 'correct', 'random'),
  });
}

/** Every kind of case, over the routes of both ports. */
export function fuzzCases(world: World, routes: { registry: RouteInfo[]; cache: RouteInfo[] }): fc.Arbitrary<Plan> {
  // Writes that can succeed weigh more: an accepted manifest or blob is what the digest property
  // is about.
  const weight = (port: string, r: RouteInfo) =>
    port !== 'registry' || !['PUT', 'POST', 'PATCH'].includes(r.method) ? 1 : r.url.endsWith('/manifests/:reference') ? 10 : 3;
  const routed = [
    ...routes.registry.map((r) => ({ arbitrary: httpPlan('registry', r, world), weight: weight('registry', r) })),
    ...routes.cache.map((r) => ({ arbitrary: httpPlan('cache', r, world), weight: weight('cache', r) })),
  ];
  return fc.oneof(
    { arbitrary: fc.oneof(...routed), weight: 20 },
    { arbitrary: fc.oneof(strayPlan('registry', world), strayPlan('cache', world)), weight: 1 },
    { arbitrary: fc.oneof(rawPlan('registry', world), rawPlan('cache', world)), weight: 2 },
    { arbitrary: crossUploadPlan(world), weight: 1 },
    { arbitrary: uploadFlowPlan(world), weight: 2 },
  );
}

/** A short, printable description of a plan (for failure messages). */
export function describePlan(p: Plan, world: World): string {
  if (p.transport === 'raw') return `raw ${p.kind} on ${p.port}: ${JSON.stringify(p.head.slice(0, 200))}`;
  if (p.transport === 'cross-upload') return `upload of ${p.owner} used by ${p.intruder} (${p.method})`;
  if (p.transport === 'upload-flow') {
    const chunks = p.chunks.map((c) => `${c.hex.length / 2}B/${c.range}${c.range === 'random' ? `(${c.start}-${c.end})` : ''}${c.chunked ? '/chunked' : ''}`);
    return `upload to ${p.name}: PATCH [${chunks.join(', ')}], PUT ${p.last === null ? 'no body' : `${p.last.length / 2}B`} digest ${p.digest} range ${p.finalRange}`;
  }
  const r = renderHttp(p, world);
  return `${p.method} ${r.path.slice(0, 300)} on ${p.port} (route ${p.route || 'none'}, body ${p.body.kind}${r.body ? ` ${r.body.length} bytes` : ''}, headers ${JSON.stringify(Object.fromEntries(Object.entries(p.headers).map(([k, v]) => [k, v.slice(0, 60)])))}${p.padding ? `, padding ${p.padding}` : ''})`;
}

export { sha256Of };
