// A manifest that lists thousands of descriptors, pushed to a server (a child process) whose
// open-file limit is 256. Regression: every descriptor was checked, and its blob linked into the
// repository, all at once, one temp file each: a manifest listing one blob 20,000 times (found by
// the fuzz suite) ran the server out of file descriptors and answered 500.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { request } from 'undici';
import { tempDir } from '../helpers/proc.js';
import { startServerChild } from '../helpers/server-child.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function send(method: 'GET' | 'POST' | 'PUT', url: string, body?: Buffer, headers: Record<string, string> = {}) {
  const res = await request(url, { method, body, headers });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
}

test('manifests listing one blob 3,000 times, and 600 distinct blobs, are accepted under a 256-file limit', async (t) => {
  const dir = await tempDir('rc-many-desc-', t);
  const server = await startServerChild(dir.path, { nofile: 256 });
  t.after(() => server.stop());
  const reg = server.registryUrl;

  // 600 small blobs in another repository: the manifest's repository mounts them all.
  const blobs: Array<{ digest: string; size: number }> = [];
  for (let i = 0; i < 600; i++) {
    const data = Buffer.from(`blob ${i}`);
    const r = await send('POST', `${reg}/v2/source/blobs/uploads/?digest=${sha256(data)}`, data);
    assert.equal(r.status, 201);
    blobs.push({ digest: sha256(data), size: data.length });
  }
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', ...blobs[0]! };
  const layer = (b: { digest: string; size: number }) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...b });
  const manifests = {
    repeated: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: Array(3000).fill(layer(blobs[1]!)) })),
    distinct: Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: blobs.map(layer) })),
  };
  for (const [tag, body] of Object.entries(manifests)) {
    const put = await send('PUT', `${reg}/v2/target/${tag}/manifests/${tag}`, body, { 'content-type': OCI_MANIFEST });
    assert.equal(put.status, 201, `${tag}: ${put.body.toString()}`);
    assert.equal(put.headers['docker-content-digest'], sha256(body));
    const back = await send('GET', `${reg}/v2/target/${tag}/manifests/${sha256(body)}`);
    assert.ok(back.body.equals(body));
  }
  // Every listed blob is now served by the manifest's repository.
  for (const b of [blobs[1]!, blobs[599]!]) assert.equal((await send('GET', `${reg}/v2/target/distinct/blobs/${b.digest}`)).status, 200);
  assert.ok(server.alive());
  assert.doesNotMatch(server.log(), /"level":50|EMFILE/);
});
