// `regcache serve --persist-index -`: the Action starts the server while it restores the index
// and hands the index over on the server's stdin once restored. The server opens its storage
// and its ports meanwhile (the version check answers), holds the cache's other requests until
// the index is imported, and then serves what the index holds (here with the upstream
// unreachable); an empty stdin is an empty index.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { emptyIndex } from '../../src/persist/index.js';
import { CLI } from '../helpers/crash.js';
import { tempDir, terminateChild, waitFor } from '../helpers/proc.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Starts `regcache serve --persist-index -` with stdin a pipe; returns it and its files. */
async function serveWithIndexOnStdin(t: TestContext): Promise<{ child: ChildProcess; readyFile: string; storage: string }> {
  const dir = await tempDir('rc-index-stdin-', t);
  const storage = join(dir.path, 'storage');
  const readyFile = join(dir.path, 'ready.json');
  const args = ['serve', '--registry-addr', '127.0.0.1:0', '--cache-addr', '127.0.0.1:0', '--storage', storage, '--ready-file', readyFile];
  const child = spawn(process.execPath, [CLI, ...args, '--log-level', 'error', '--upstream', 'docker.io=http://127.0.0.1:9', '--persist-index', '-'], {
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  t.after(() => terminateChild(child, 5000));
  return { child, readyFile, storage };
}

test('--persist-index -: the server is ready before the index, holds requests until it arrives, then serves what it holds', async (t) => {
  const { child, readyFile } = await serveWithIndexOnStdin(t);
  // Ready while the index is still "being restored": the version check answers.
  const ready = await waitFor(async () => existsSync(readyFile) && (JSON.parse(await readFile(readyFile, 'utf8')) as { cache: string }), { what: 'the ready file' });
  assert.equal((await fetch(`${ready.cache}/v2/`)).status, 200);

  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.byteLength }, layers: [] }));
  const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  // Asked for before the index arrived: the request waits (the upstream is unreachable, so
  // only the index can answer it).
  let answered = false;
  const early = fetch(`${ready.cache}/v2/library/app/manifests/${digest}`, { headers: { accept: OCI_MANIFEST } }).finally(() => (answered = true));
  await sleep(300);
  assert.equal(answered, false, 'held until the index arrives');

  // The cache's own name of library/app on docker.io, as the index records it.
  const repo = 'docker.io/library/app';
  const index = emptyIndex();
  index.manifests[repo] = { [digest]: { mediaType: OCI_MANIFEST, body: manifest.toString('base64') } };
  index.tags[repo] = { v1: digest };
  index.inline[configDigest] = config.toString('base64');
  index.blobs[repo] = [configDigest];
  child.stdin!.end(JSON.stringify(index));

  const byDigest = await early;
  assert.equal(byDigest.status, 200);
  assert.deepEqual(Buffer.from(await byDigest.arrayBuffer()), manifest);
  const blob = await fetch(`${ready.cache}/v2/library/app/blobs/${configDigest}`);
  assert.equal(blob.status, 200);
  assert.deepEqual(Buffer.from(await blob.arrayBuffer()), config);
});

test('--persist-index - with an empty stdin (the restore failed): the server starts with an empty index', async (t) => {
  const { child, readyFile } = await serveWithIndexOnStdin(t);
  child.stdin!.end();
  const ready = await waitFor(async () => existsSync(readyFile) && (JSON.parse(await readFile(readyFile, 'utf8')) as { registry: string }), { what: 'the ready file' });
  assert.equal((await fetch(`${ready.registry}/v2/`)).status, 200);
});
