// The referrers API through the cache port: `GET /v2/<name>/referrers/<digest>` is asked of the
// upstream (the same routing, token flow and credentials as manifests), with the client's
// `artifactType` filter. The upstream's `Link` pages are followed here and merged into one list,
// so no upstream URL reaches a client (the route paginates that list with its own Link when it
// is long). When the upstream ignored the filter (no `OCI-Filters-Applied: artifactType`), the
// list is filtered here. Answers are kept in memory for the tag TTL and served stale when the
// upstream fails. An upstream without the API (404) is answered 404 too, so that clients fall
// back to the tag schema: the `sha256-<hex>` tags are then served through the cache like any tag.
import { OCI_INDEX, RegistryError, parseDescriptor, type Descriptor, type Digest } from '../oci/index.js';
import type { Repositories } from '../storage/index.js';
import type { Stats } from '../stats/index.js';
import { SingleFlight } from '../shared/index.js';
import { header, readLimited, type UpstreamClient, type UpstreamResponse } from './upstream-client.js';
import type { Route } from './upstreams.js';

/** Most bytes of one upstream page (the limit clients put on a referrers index: 4 MiB). */
const MAX_PAGE_BYTES = 4 * 1024 * 1024;
/** Most pages followed for one answer, and most bytes read for it over all its pages. */
const MAX_PAGES = 64;
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
/** Most bytes of answers kept in memory (the oldest go first beyond it). */
const KEPT_BYTES = 32 * 1024 * 1024;

/** What the upstream said about the referrers of one subject (for one filter). */
export type ReferrersAnswer =
  /** The referrers, already filtered as asked. */
  | { kind: 'listed'; manifests: Descriptor[] }
  /** A 404: no referrers API (UNSUPPORTED), or no such repository (NAME_UNKNOWN). */
  | { kind: 'absent'; code: 'NAME_UNKNOWN' | 'UNSUPPORTED'; message: string };

interface Kept {
  answer: ReferrersAnswer;
  at: number;
  bytes: number;
}

/** What {@link UpstreamReferrers} is built from. */
export interface UpstreamReferrersOptions {
  /** The upstream route and client of a cache repository name. */
  route(name: string): { route: Route; client: UpstreamClient };
  /** The cache's repository records: referrers of manifests pulled through, a last resort. */
  repositories: Repositories;
  stats: Stats;
  /** How long an answer is served without asking the upstream again (the tag TTL). */
  tagTtlMs: number;
}

/** The referrers of a subject as the upstream lists them, cached for the tag TTL. */
export class UpstreamReferrers {
  private readonly kept = new Map<string, Kept>();
  private keptBytes = 0;
  private readonly flight = new SingleFlight<ReferrersAnswer>();

  constructor(private readonly o: UpstreamReferrersOptions) {}

  /**
   * The referrers of `subject` in `name` (only those of `artifactType` when given): a fresh kept
   * answer, else the upstream's, else (the upstream failing) a kept one, stale, else the referrers
   * of the manifests this cache holds, stale. Throws the upstream's failure when there is neither;
   * a 404 RegistryError when the upstream has no referrers API.
   */
  async list(name: string, subject: Digest, artifactType?: string): Promise<Descriptor[]> {
    const key = keyOf(name, subject, artifactType);
    const fresh = this.keptFor(name, subject, artifactType, true);
    if (fresh) {
      this.o.stats.referrersServed(name, 'local');
      return served(fresh.answer, artifactType);
    }
    let answer: ReferrersAnswer;
    try {
      answer = await this.flight.run(key, () => this.fetch(name, subject, artifactType)).promise;
    } catch (err) {
      return this.stale(name, subject, artifactType, err);
    }
    this.o.stats.referrersServed(name, 'upstream');
    return served(answer, artifactType);
  }

  /** What is served when the upstream failed with `err`. */
  private async stale(name: string, subject: Digest, artifactType: string | undefined, err: unknown): Promise<Descriptor[]> {
    const kept = this.keptFor(name, subject, artifactType, false);
    if (kept) {
      this.o.stats.referrersServed(name, 'stale');
      return served(kept.answer, artifactType);
    }
    const local = filtered(await this.o.repositories.listReferrers(name, subject).catch(() => []), artifactType);
    if (local.length === 0) throw err;
    this.o.stats.referrersServed(name, 'stale');
    return local;
  }

  /** A kept answer for this filter, or the unfiltered one (filtered on the way out); only fresh ones when `fresh`. */
  private keptFor(name: string, subject: Digest, artifactType: string | undefined, fresh: boolean): Kept | undefined {
    const usable = (k: Kept | undefined) => (k && (!fresh || Date.now() - k.at < this.o.tagTtlMs) ? k : undefined);
    return usable(this.kept.get(keyOf(name, subject, artifactType))) ?? (artifactType === undefined ? undefined : usable(this.kept.get(keyOf(name, subject))));
  }

  /** Asks the upstream, follows its Link pages, and keeps the answer. */
  private async fetch(name: string, subject: Digest, artifactType: string | undefined): Promise<ReferrersAnswer> {
    const { route, client } = this.o.route(name);
    const ns = route.upstream.ns;
    const base = `referrers/${subject.value}`;
    let path = artifactType === undefined ? base : `${base}?artifactType=${encodeURIComponent(artifactType)}`;
    const manifests: Descriptor[] = [];
    let filteredUpstream = true;
    let bytes = 0;
    for (let page = 0; ; page++) {
      if (page === MAX_PAGES) throw new RegistryError('UNAVAILABLE', `${ns} lists the referrers of ${subject.value} on more than ${MAX_PAGES} pages`);
      const res = await client.request('GET', route.remote, path, { accept: OCI_INDEX });
      if (res.status === 404 && page === 0) return this.keep(keyOf(name, subject, artifactType), await absent(res, ns));
      if (res.status !== 200) throw await refusal(res, ns);
      const body = await readLimited(res.body, MAX_PAGE_BYTES, () => new RegistryError('UNAVAILABLE', `${ns} sent a referrers page over ${MAX_PAGE_BYTES} bytes`));
      bytes += body.byteLength;
      this.o.stats.bytesFetched(ns, name, body.byteLength);
      if (bytes > MAX_ANSWER_BYTES) throw new RegistryError('UNAVAILABLE', `${ns} lists over ${MAX_ANSWER_BYTES} bytes of referrers of ${subject.value}`);
      manifests.push(...parsePage(body, ns));
      filteredUpstream &&= filtersApplied(res.headers).includes('artifactType');
      const next = nextPage(header(res.headers, 'link'), `${client.config.url}/v2/${route.remote}/${path}`, `/v2/${route.remote}/${base}`);
      if (next === undefined) break;
      if (`${base}${next}` === path) throw new RegistryError('UNAVAILABLE', `${ns} sent a Link to the same referrers page`);
      path = `${base}${next}`;
    }
    // Pages of a list that changed while they were read may overlap.
    const unique = [...new Map(manifests.map((d) => [d.digest, d])).values()];
    const answer: ReferrersAnswer = { kind: 'listed', manifests: filteredUpstream ? unique : filtered(unique, artifactType) };
    return this.keep(keyOf(name, subject, artifactType), answer);
  }

  private keep(key: string, answer: ReferrersAnswer): ReferrersAnswer {
    const old = this.kept.get(key);
    if (old) {
      this.kept.delete(key);
      this.keptBytes -= old.bytes;
    }
    const bytes = JSON.stringify(answer).length + key.length;
    this.kept.set(key, { answer, at: Date.now(), bytes });
    this.keptBytes += bytes;
    for (const [k, v] of this.kept) {
      if (this.keptBytes <= KEPT_BYTES) break;
      this.kept.delete(k);
      this.keptBytes -= v.bytes;
    }
    return answer;
  }
}

function keyOf(name: string, subject: Digest, artifactType?: string): string {
  return artifactType === undefined ? `${name}@${subject.value}` : `${name}@${subject.value}?${artifactType}`;
}

function filtered(list: Descriptor[], artifactType: string | undefined): Descriptor[] {
  return artifactType === undefined ? list : list.filter((d) => d.artifactType === artifactType);
}

/** The descriptors an answer lists (filtered, for an answer kept unfiltered), or its 404. */
function served(answer: ReferrersAnswer, artifactType: string | undefined): Descriptor[] {
  if (answer.kind === 'absent') throw new RegistryError(answer.code, answer.message, { status: 404 });
  return filtered(answer.manifests, artifactType);
}

/** The answer for an upstream's 404: its repository is unknown, or it has no referrers API. */
async function absent(res: UpstreamResponse, ns: string): Promise<ReferrersAnswer> {
  const body = await readLimited(res.body, 16 * 1024, () => new RegistryError('UNAVAILABLE', `${ns}'s error body is too large`)).catch(() => Buffer.alloc(0));
  let code: unknown;
  try {
    code = (JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown }> }).errors?.[0]?.code;
  } catch {
    // not the error envelope ("404 page not found" of a registry without the API)
  }
  return code === 'NAME_UNKNOWN'
    ? { kind: 'absent', code: 'NAME_UNKNOWN', message: `${ns} does not know this repository` }
    : { kind: 'absent', code: 'UNSUPPORTED', message: `${ns} has no referrers API: use the referrers tag schema` };
}

/**
 * An answer that is not a page: a 4xx refusal is final (DENIED); anything else (a 5xx, a later
 * page gone) is UNAVAILABLE, which lets a kept answer be served stale.
 */
async function refusal(res: UpstreamResponse, ns: string): Promise<RegistryError> {
  res.body.resume();
  const final = res.status >= 400 && res.status < 500 && res.status !== 404;
  return new RegistryError(final ? 'DENIED' : 'UNAVAILABLE', `${ns} answered ${res.status} for referrers`);
}

/** The descriptors of one page: an image index whose `manifests` are valid descriptors. */
function parsePage(body: Buffer, ns: string): Descriptor[] {
  const invalid = () => new RegistryError('UNAVAILABLE', `${ns} sent an invalid referrers index`);
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalid();
  }
  const manifests = (doc as { manifests?: unknown } | null)?.manifests;
  if (!Array.isArray(manifests)) throw invalid();
  try {
    return manifests.map((d, i) => parseDescriptor(d, `manifests[${i}]`));
  } catch {
    throw invalid();
  }
}

/** The filters an answer says it applied (`OCI-Filters-Applied: artifactType`). */
function filtersApplied(headers: UpstreamResponse['headers']): string[] {
  const v = headers['oci-filters-applied'];
  return (Array.isArray(v) ? v.join(',') : (v ?? '')).split(',').map((s) => s.trim());
}

/**
 * The query of the next page a `Link` header names (`?...`, or '' for none), resolved against
 * the page's URL; undefined when there is no next page. Only the query is taken: the page is
 * asked of the configured upstream, whatever host the Link names (credentials go nowhere else),
 * and a Link to another path than this subject's referrers is refused.
 */
function nextPage(link: string | undefined, pageUrl: string, path: string): string | undefined {
  if (!link) return undefined;
  for (const m of link.matchAll(/<([^>]*)>([^,]*)/g)) {
    if (!/;\s*rel="?next"?/i.test(m[2]!)) continue;
    const next = new URL(m[1]!, pageUrl);
    if (decodeURIComponent(next.pathname) !== decodeURIComponent(path)) {
      throw new RegistryError('UNAVAILABLE', `the upstream's next referrers page is elsewhere (${next.pathname.slice(0, 200)})`);
    }
    return next.search;
  }
  return undefined;
}
