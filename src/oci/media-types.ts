// Media types of the manifests regcache stores and serves, and what kind of manifest each is.

/** OCI image manifest. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** OCI image index. */
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
/** Docker image manifest, schema 2. */
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
/** Docker manifest list. */
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
/** The OCI empty descriptor's media type (config of artifacts without one). */
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';

/** Whether a manifest media type lists blobs (image) or other manifests (index). */
export type ManifestKind = 'image' | 'index';

const KINDS: ReadonlyMap<string, ManifestKind> = new Map([
  [OCI_MANIFEST, 'image'],
  [DOCKER_MANIFEST, 'image'],
  [OCI_INDEX, 'index'],
  [DOCKER_MANIFEST_LIST, 'index'],
]);

/** The kind of a manifest media type regcache accepts, or undefined if it accepts none such. */
export function manifestKind(mediaType: string): ManifestKind | undefined {
  return KINDS.get(mediaType);
}

/** Every manifest media type regcache serves, for `Accept` headers sent upstream. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [...KINDS.keys()];

/** Strips parameters (`; charset=...`) and case from a Content-Type header value. */
export function baseMediaType(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const t = contentType.split(';')[0]!.trim().toLowerCase();
  return t || undefined;
}
