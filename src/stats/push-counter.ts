// Counts what clients push to and pull from the registry port: the registry's backend wrapped
// so that each blob upload or mount and each manifest PUT that succeeded, and each manifest and
// blob served, is recorded in the statistics (the job summary lists the images). Every other
// call passes through untouched.
import type { Digest } from '../oci/index.js';
import type { RegistryBackend } from '../storage/index.js';
import type { Stats } from './stats.js';

/**
 * `backend` with its successful pushes and its reads recorded in `stats`. `claim(d)` is true
 * once for a blob the Actions cache restored (a pushed image a previous job saved).
 */
export function countPushes<B extends RegistryBackend>(backend: B, stats: Stats, claim: (d: Digest) => boolean = () => false): B {
  const counted: Partial<RegistryBackend> = {
    getManifest: async (name, reference, withBody) => {
      const m = await backend.getManifest(name, reference, withBody);
      if (m) stats.registryServed(name, m.digest.value, withBody ? m.size : 0, reference.kind === 'tag' ? reference.tag : reference.digest.value);
      return m;
    },
    openBlob: async (name, d) => {
      const handle = await backend.openBlob(name, d);
      if (handle) {
        if (claim(d)) stats.fromActionsCache([d.value]);
        stats.registryServed(name, d.value, handle.size ?? 0);
      }
      return handle;
    },
    putBlob: async (name, expected, source, expectedSize) => {
      const size = await backend.putBlob(name, expected, source, expectedSize);
      stats.blobPushed(name, expected.value, size);
      return size;
    },
    completeUpload: async (name, session, expected, last) => {
      const size = await backend.completeUpload(name, session, expected, last);
      stats.blobPushed(name, expected.value, size);
      return size;
    },
    mountBlob: async (name, d, from) => {
      const mounted = await backend.mountBlob(name, d, from);
      if (mounted) stats.blobPushed(name, d.value, (await backend.statBlob(name, d).catch(() => undefined)) ?? 0);
      return mounted;
    },
    putManifest: async (name, reference, body, contentType) => {
      const result = await backend.putManifest(name, reference, body, contentType);
      stats.manifestPushed(name, reference.kind === 'tag' ? reference.tag : reference.digest.value, result.digest.value, body.byteLength);
      return result;
    },
  };
  return new Proxy(backend, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop in counted) return counted[prop as keyof RegistryBackend];
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
