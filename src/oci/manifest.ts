// Manifest parsing and validation: turns pushed bytes into the descriptors the registry must
// check (config, layers, child manifests, subject) without changing a byte of what is stored.
import { RegistryError } from './errors.js';
import { tryParseDigest } from './digest.js';
import { baseMediaType, manifestKind, type ManifestKind } from './media-types.js';

/** A content descriptor as manifests carry it. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: Record<string, unknown>;
  urls?: string[];
}

/** What regcache needs to know of a manifest. */
export interface ParsedManifest {
  mediaType: string;
  kind: ManifestKind;
  /** Config blob of an image manifest. */
  config?: Descriptor;
  /** Layer blobs of an image manifest. */
  layers: Descriptor[];
  /** Child manifests of an index. */
  manifests: Descriptor[];
  subject?: Descriptor;
  /** The manifest's `artifactType`, else (image manifests) its config media type. */
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(reason: string): RegistryError {
  return new RegistryError('MANIFEST_INVALID', 'manifest invalid', { detail: { reason } });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseAnnotations(v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || Object.values(v).some((x) => typeof x !== 'string')) throw invalid(`${where}: annotations must map strings to strings`);
  return v as Record<string, string>;
}

/** Validates one descriptor object; throws MANIFEST_INVALID naming `where`. */
export function parseDescriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v)) throw invalid(`${where}: descriptor must be an object`);
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== 'string' || mediaType.length === 0) throw invalid(`${where}: mediaType missing`);
  if (typeof digest !== 'string' || !tryParseDigest(digest)) throw invalid(`${where}: digest invalid`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${where}: size invalid`);
  const d: Descriptor = { mediaType, digest, size };
  if (v.artifactType !== undefined) {
    if (typeof v.artifactType !== 'string') throw invalid(`${where}: artifactType must be a string`);
    d.artifactType = v.artifactType;
  }
  const annotations = parseAnnotations(v.annotations, where);
  if (annotations) d.annotations = annotations;
  if (isObject(v.platform)) d.platform = v.platform;
  if (Array.isArray(v.urls)) d.urls = v.urls.filter((u): u is string => typeof u === 'string');
  return d;
}

function parseDescriptorList(v: unknown, where: string): Descriptor[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalid(`${where} must be an array`);
  return v.map((d, i) => parseDescriptor(d, `${where}[${i}]`));
}

/**
 * The blobs (config, layers) and child manifests `m` names, each once. Layers with `urls`
 * (foreign layers) live elsewhere by definition. An index entry whose media type is not a
 * manifest's names a blob: BuildKit's registry cache exporter pushes an index of its layers and
 * cache config, which distribution accepts too.
 */
export function manifestReferences(m: ParsedManifest): { blobs: string[]; children: string[] } {
  const blobs = new Set((m.config ? [m.config, ...m.layers] : m.layers).filter((b) => !b.urls?.length).map((b) => b.digest));
  const children = new Set<string>();
  for (const c of m.manifests) (manifestKind(c.mediaType) ? children : blobs).add(c.digest);
  return { blobs: [...blobs], children: [...children] };
}

/**
 * Parses manifest bytes pushed with the given Content-Type. The media type is the
 * manifest's own `mediaType` field, else the Content-Type, else inferred from its shape;
 * the two must agree when both are given.
 */
export function parseManifest(body: Uint8Array, contentType?: string): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    throw invalid('body is not JSON');
  }
  if (!isObject(doc)) throw invalid('manifest must be a JSON object');
  if (doc.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  const header = baseMediaType(contentType);
  if (declared && header && manifestKind(header) && declared !== header) {
    throw invalid(`mediaType ${declared} does not match Content-Type ${header}`);
  }
  const mediaType = declared ?? (header && manifestKind(header) ? header : inferMediaType(doc));
  const kind = manifestKind(mediaType);
  if (!kind) throw invalid(`unsupported manifest media type ${mediaType}`);

  const parsed: ParsedManifest = { mediaType, kind, layers: [], manifests: [] };
  if (kind === 'image') {
    if (doc.config === undefined) throw invalid('config missing');
    parsed.config = parseDescriptor(doc.config, 'config');
    parsed.layers = parseDescriptorList(doc.layers ?? [], 'layers');
  } else {
    if (doc.manifests === undefined) throw invalid('manifests missing');
    parsed.manifests = parseDescriptorList(doc.manifests, 'manifests');
  }
  if (doc.subject !== undefined) parsed.subject = parseDescriptor(doc.subject, 'subject');
  if (doc.artifactType !== undefined) {
    if (typeof doc.artifactType !== 'string') throw invalid('artifactType must be a string');
    parsed.artifactType = doc.artifactType;
  } else if (parsed.config) {
    parsed.artifactType = parsed.config.mediaType;
  }
  const annotations = parseAnnotations(doc.annotations, 'manifest');
  if (annotations) parsed.annotations = annotations;
  return parsed;
}

function inferMediaType(doc: Record<string, unknown>): string {
  if (Array.isArray(doc.manifests)) return 'application/vnd.oci.image.index.v1+json';
  if (doc.config !== undefined) return 'application/vnd.oci.image.manifest.v1+json';
  throw invalid('cannot tell the manifest media type: no mediaType, Content-Type or shape');
}
