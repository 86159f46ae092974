// A tiny Linux image built on the spot from the static busybox, so end-to-end tests need no
// image from the network: /bin/busybox plus a symlink per applet (sh, echo, cat, ls, wget, ...),
// /etc/passwd and /etc/group for root, and empty /dev /proc /sys /tmp /root. The tarball is
// written here in ustar format (sorted entries, root:root, mtime 0), so it is byte-for-byte
// the same on every run with the same busybox, and so is its diff ID.
// Two ways in: `docker import` into a dockerd, or an OCI image layout for skopeo/ctr.
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Dockerd } from './dockerd.js';
import { run } from './proc.js';
import { toolPath } from './tools.js';

/** PATH set in the image config, as docker would default it. */
export const IMAGE_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** One member of a rootfs tarball (owner root:root unless uid/gid say otherwise, mtime 0). */
export interface TarEntry {
  name: string;
  mode: number;
  /** Owner (default 0, with the names root:root; other ids are written without names). */
  uid?: number;
  gid?: number;
  /** ustar type flag: '0' file, '2' symlink, '5' directory. */
  type: '0' | '2' | '5';
  linkname?: string;
  data?: Buffer;
}

/** A 512-byte ustar header for `e`. */
function tarHeader(e: TarEntry): Buffer {
  const h = Buffer.alloc(512);
  const octal = (value: number, offset: number, width: number) =>
    h.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, width, 'ascii');
  h.write(e.name, 0, 100, 'utf8');
  octal(e.mode, 100, 8);
  octal(e.uid ?? 0, 108, 8);
  octal(e.gid ?? 0, 116, 8);
  octal(e.data?.length ?? 0, 124, 12);
  octal(0, 136, 12); // mtime
  h.write(' '.repeat(8), 148, 8, 'ascii'); // checksum placeholder
  h.write(e.type, 156, 1, 'ascii');
  h.write(e.linkname ?? '', 157, 100, 'utf8');
  h.write('ustar\0' + '00', 257, 8, 'ascii');
  if ((e.uid ?? 0) === 0) h.write('root', 265, 32, 'ascii');
  if ((e.gid ?? 0) === 0) h.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

/** Serializes entries as a tar archive (with its two zero end blocks). */
function tarArchive(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(tarHeader(e));
    if (e.data && e.data.length > 0) {
      parts.push(e.data, Buffer.alloc((512 - (e.data.length % 512)) % 512));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/**
 * Writes entries to `file` as a tar archive, one member at a time (for rootfs trees too large
 * to build in memory, such as one holding node).
 */
export async function writeTarFile(file: string, entries: readonly TarEntry[]): Promise<void> {
  const fh = await open(file, 'w');
  try {
    for (const e of entries) {
      await fh.write(tarHeader(e));
      if (e.data && e.data.length > 0) {
        await fh.write(e.data);
        await fh.write(Buffer.alloc((512 - (e.data.length % 512)) % 512));
      }
    }
    await fh.write(Buffer.alloc(1024));
  } finally {
    await fh.close();
  }
}

/** Applet names the installed busybox provides (from `busybox --list`). */
async function applets(busybox: string): Promise<string[]> {
  const { stdout } = await run(busybox, ['--list']);
  return stdout.split('\n').filter((a) => /^[\w.[\]-]+$/.test(a) && a !== 'busybox');
}

/** The rootfs members, sorted by name (parents sort before their children). */
async function rootfsEntries(): Promise<TarEntry[]> {
  const busybox = toolPath('busybox');
  const dir = (name: string, mode = 0o755): TarEntry => ({ name: `${name}/`, mode, type: '5' });
  const file = (name: string, data: Buffer, mode = 0o644): TarEntry => ({ name, mode, type: '0', data });
  const entries: TarEntry[] = [
    dir('bin'), dir('dev'), dir('etc'), dir('proc'), dir('root', 0o700), dir('sys'), dir('tmp', 0o1777),
    file('bin/busybox', await readFile(busybox), 0o755),
    file('etc/passwd', Buffer.from('root:x:0:0:root:/root:/bin/sh\n')),
    file('etc/group', Buffer.from('root:x:0:\n')),
  ];
  for (const a of await applets(busybox)) entries.push({ name: `bin/${a}`, mode: 0o777, type: '2', linkname: 'busybox' });
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The busybox rootfs as an uncompressed tarball, built in memory (about 2 MB). */
export async function busyboxRootfsTar(): Promise<Buffer> {
  return tarArchive(await rootfsEntries());
}

/**
 * Writes the busybox rootfs tarball to `file` (a path in a temp dir the caller owns) and
 * returns its sha256 digest ("sha256:<hex>", the layer's diff ID).
 */
export async function writeBusyboxRootfsTar(file: string): Promise<string> {
  const tar = await busyboxRootfsTar();
  await writeFile(file, tar);
  return sha256(tar);
}

/**
 * Imports the busybox rootfs into `dockerd` as image `ref` (CMD ["/bin/sh"], PATH set) and
 * returns the image ID. `docker run` and `RUN` steps of `docker build` work with it.
 */
export async function importBusyboxImage(dockerd: Pick<Dockerd, 'dir' | 'docker'>, ref: string): Promise<string> {
  const file = join(dockerd.dir, `busybox-rootfs-${Date.now()}-${Math.random().toString(36).slice(2)}.tar`);
  await writeBusyboxRootfsTar(file);
  const { stdout } = await dockerd.docker(['import', '--change', `ENV ${IMAGE_PATH}`, '--change', 'CMD ["/bin/sh"]', file, ref]);
  await rm(file, { force: true });
  return stdout.trim();
}

/** What writeBusyboxOciLayout wrote. */
export interface OciLayoutImage {
  /** The layout directory. */
  dir: string;
  /** skopeo source/destination name, `oci:<dir>:<tag>`. */
  skopeoRef: string;
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  /** Digest of the gzip-compressed layer blob. */
  layerDigest: string;
  layerSize: number;
  /** Digest of the uncompressed layer tar. */
  diffId: string;
}

/**
 * Writes the busybox image as an OCI image layout in `dir` (created if needed; one gzip layer,
 * OCI media types, no creation time), tagged `tag`. Push it without any daemon:
 * `skopeo copy --dest-tls-verify=false oci:<dir>:<tag> docker://127.0.0.1:<port>/<name>:<tag>`.
 */
export async function writeBusyboxOciLayout(dir: string, tag = 'latest'): Promise<OciLayoutImage> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const tar = await busyboxRootfsTar();
  const diffId = sha256(tar);
  const layer = gzipSync(tar);
  const layerDigest = await writeBlob(dir, layer);
  const config = Buffer.from(JSON.stringify(imageConfig(diffId)));
  const configDigest = await writeBlob(dir, config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
  }));
  const manifestDigest = await writeBlob(dir, manifest);
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: manifestDigest,
      size: manifest.length,
      annotations: { 'org.opencontainers.image.ref.name': tag },
    }],
  }));
  return { dir, skopeoRef: `oci:${dir}:${tag}`, manifestDigest, manifestSize: manifest.length, configDigest, layerDigest, layerSize: layer.length, diffId };
}

function imageConfig(diffId: string): object {
  return {
    architecture: process.arch === 'x64' ? 'amd64' : process.arch,
    os: 'linux',
    config: { Env: [IMAGE_PATH], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: [diffId] },
  };
}

async function writeBlob(layoutDir: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  await writeFile(join(layoutDir, 'blobs', 'sha256', digest.slice('sha256:'.length)), data);
  return digest;
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
