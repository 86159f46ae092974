// The mirror probe: a tiny image the cache serves itself as `regcache-probe/mirror-check`
// on Docker Hub's namespace, never asking upstream. The Action pulls it with the docker
// daemon after configuring `registry-mirrors`: a pull that succeeds and shows in the
// cache's statistics proves the daemon really goes through the cache, with no request to
// Docker Hub (a pull of anything real would cost one).
import { gzipSync } from 'node:zlib';
import { digestOf, OCI_MANIFEST, type Digest } from '../oci/index.js';
import type { BlobStore, Repositories } from '../storage/index.js';

/** The probe's repository as clients name it (Docker Hub namespace). */
export const PROBE_REPOSITORY = 'regcache-probe/mirror-check';
/** The probe's tag. */
export const PROBE_TAG = 'latest';

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' };

/** The probe image's bytes: an empty tar layer, its config and an OCI manifest. */
export function probeImage(): { manifest: Buffer; manifestDigest: Digest; blobs: Array<{ digest: Digest; data: Buffer }> } {
  const tar = Buffer.alloc(1024); // an empty tar archive: two zero blocks
  const layer = gzipSync(tar, { level: 9 });
  const config = Buffer.from(
    JSON.stringify({
      architecture: ARCH[process.arch] ?? process.arch,
      os: 'linux',
      config: { Labels: { 'org.opencontainers.image.description': 'regcache mirror probe' } },
      rootfs: { type: 'layers', diff_ids: [digestOf(tar).value] },
    }),
  );
  const layerDigest = digestOf(layer);
  const configDigest = digestOf(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest.value, size: config.byteLength },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest.value, size: layer.byteLength }],
    }),
  );
  return {
    manifest,
    manifestDigest: digestOf(manifest),
    blobs: [
      { digest: layerDigest, data: layer },
      { digest: configDigest, data: config },
    ],
  };
}

/**
 * Stores the probe image under `canonical` in the cache's records. Nothing is written when it
 * is there already (so that a server starts on a full disk).
 */
export async function installProbe(blobs: BlobStore, repositories: Repositories, canonical: string): Promise<void> {
  const image = probeImage();
  if ((await repositories.resolveTag(canonical, PROBE_TAG)) === image.manifestDigest.value && (await blobs.stat(image.manifestDigest)) !== undefined) return;
  for (const b of image.blobs) {
    await blobs.putBytes(b.digest, b.data, { repositories, name: canonical });
  }
  await blobs.lifetime.holding([image.manifestDigest.value], async () => {
    await blobs.putBytes(image.manifestDigest, image.manifest);
    await repositories.putManifest(canonical, image.manifestDigest, { mediaType: OCI_MANIFEST, size: image.manifest.byteLength });
  });
  await repositories.putTag(canonical, PROBE_TAG, image.manifestDigest);
}
