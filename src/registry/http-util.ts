// Parsing of the request pieces the routes share: validated path parameters, byte ranges,
// pagination, and the body stream.
import type { FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { RegistryError, assertName, parseDigest, type Digest } from '../oci/index.js';

/** The validated repository name of a request. */
export function nameParam(request: FastifyRequest): string {
  return assertName((request.params as { name: string }).name);
}

/** A validated digest from a path parameter or query. */
export function digestParam(value: string | undefined): Digest {
  if (value === undefined || value === '') throw new RegistryError('DIGEST_INVALID', 'digest missing');
  return parseDigest(value);
}

/** The query parameters as single strings (the first of repeated ones). */
export function query(request: FastifyRequest): Record<string, string | undefined> {
  const q = request.query as Record<string, string | string[] | undefined>;
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(q)) out[k] = Array.isArray(v) ? v[0] : v;
  return out;
}

/**
 * The request body's chunks (every body goes through the pass-through parser). A request
 * without Content-Type and without a body never reaches the parser: it reads as empty. A reader
 * that stops early (a size limit, a full disk) leaves the request intact, so that the error
 * answer can drain the rest of the body (error-handler.ts) instead of closing the connection.
 */
export function bodyStream(request: FastifyRequest): AsyncIterable<Uint8Array> {
  return ((request.body as Readable | undefined) ?? Readable.from([])).iterator({ destroyOnReturn: false });
}

/** True when the request announces no body. */
export function hasNoBody(request: FastifyRequest): boolean {
  const len = request.headers['content-length'];
  return request.headers['transfer-encoding'] === undefined && (len === undefined || len === '0');
}

/** Content-Length as a number, if given. */
export function contentLength(request: FastifyRequest): number | undefined {
  const v = request.headers['content-length'];
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Reads a body of at most `limit` bytes into memory; 413 past it. */
export async function readBody(request: FastifyRequest, limit: number): Promise<Buffer> {
  const tooLarge = () => new RegistryError('SIZE_INVALID', `body exceeds ${limit} bytes`, { status: 413, detail: { limit } });
  const declared = contentLength(request);
  if (declared !== undefined && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of bodyStream(request)) {
    size += (chunk as Buffer).byteLength;
    if (size > limit) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}

/** A single byte range `[start, end]` (inclusive) resolved against a size. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Parses a `Range: bytes=...` header against `size`. Returns undefined for no header,
 * throws RANGE_INVALID (416) for one that cannot be satisfied or is malformed.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const unsatisfiable = () =>
    new RegistryError('RANGE_INVALID', 'range not satisfiable', { headers: { 'content-range': `bytes */${size}` } });
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) throw unsatisfiable();
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable();
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start > end || start >= size) throw unsatisfiable();
  return { start, end };
}

/** Parses an upload chunk's `Content-Range: <start>-<end>` header. */
export function parseContentRange(header: string | undefined): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!m) throw new RegistryError('RANGE_INVALID', 'malformed Content-Range');
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) throw new RegistryError('RANGE_INVALID', 'malformed Content-Range');
  return { start, end };
}

/** Pagination parameters `n` and `last` of tag and catalog listings. */
export function pagination(request: FastifyRequest): { n?: number; last?: string } {
  const q = query(request);
  const out: { n?: number; last?: string } = {};
  if (q.n !== undefined && q.n !== '') {
    const n = Number(q.n);
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RegistryError('PAGINATION_NUMBER_INVALID', 'n must be a non-negative integer', { detail: { n: q.n.slice(0, 40) } });
    }
    out.n = n;
  }
  if (q.last !== undefined && q.last !== '') out.last = q.last;
  return out;
}

/** One page of a sorted list, and the `Link` header that points at the next one. */
export function paginate(sorted: string[], path: string, n: number | undefined, last: string | undefined): { page: string[]; link?: string } {
  const from = last === undefined ? 0 : upperBound(sorted, last);
  if (n === undefined) return { page: sorted.slice(from) };
  const page = sorted.slice(from, from + n);
  if (from + n >= sorted.length || page.length === 0) return { page };
  const next = `${path}?n=${n}&last=${encodeURIComponent(page[page.length - 1]!)}`;
  return { page, link: `<${next}>; rel="next"` };
}

function upperBound(sorted: string[], value: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
