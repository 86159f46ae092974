// Counts what clients push to the registry port: the registry's backend wrapped so that each
// blob upload or mount and each manifest PUT that succeeded is recorded in the statistics
// (the job summary lists pushed images). Every other call passes through untouched.
import type { RegistryBackend } from '../storage/index.js';
import type { Stats } from './stats.js';

/** `backend` with its successful pushes recorded in `stats`. */
export function countPushes<B extends RegistryBackend>(backend: B, stats: Stats): B {
  const counted: Partial<RegistryBackend> = {
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
