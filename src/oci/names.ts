// Repository names, tags and references as the OCI distribution spec defines them.
// Validated before any of them touches a path or a map key.
import { RegistryError } from './errors.js';
import { tryParseDigest, type Digest } from './digest.js';

// Spec: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Longest repository name accepted (distribution's limit; hosts prepend theirs). */
export const MAX_NAME_LENGTH = 255;

/** True when `name` is a valid repository name. */
export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

/** Throws NAME_INVALID unless `name` is a valid repository name. */
export function assertName(name: string): string {
  if (!isValidName(name)) {
    throw new RegistryError('NAME_INVALID', 'invalid repository name', { detail: { name: name.slice(0, 300) } });
  }
  return name;
}

/** True when `tag` is a valid tag. */
export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** A manifest reference: a tag or a digest. */
export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

/**
 * Parses a manifest reference. A malformed digest is DIGEST_INVALID; a malformed tag is
 * MANIFEST_UNKNOWN when reading (no such manifest can exist) and MANIFEST_INVALID when writing.
 */
export function parseReference(ref: string, mode: 'read' | 'write'): Reference {
  if (ref.includes(':')) {
    const digest = tryParseDigest(ref);
    if (!digest) throw new RegistryError('DIGEST_INVALID', 'invalid digest reference', { detail: { reference: ref.slice(0, 200) } });
    return { kind: 'digest', digest };
  }
  if (!isValidTag(ref)) {
    throw new RegistryError(mode === 'read' ? 'MANIFEST_UNKNOWN' : 'MANIFEST_INVALID', 'invalid tag', { detail: { tag: ref.slice(0, 200) } });
  }
  return { kind: 'tag', tag: ref };
}
