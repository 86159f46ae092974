// Scenario: regcache serving TLS with a certificate from a throwaway CA (openssl; SAN
// IP:127.0.0.1 and this machine's first non-loopback IPv4 address).
// - `regcache serve --tls-cert --tls-key` (the built CLI, as a process) on 127.0.0.1: skopeo
//   copies and inspects with verification on, trusting the CA through --dest-cert-dir/--cert-dir,
//   and fails without it; undici likewise. Docker pushes there with no CA installed at all:
//   dockerd always treats 127.0.0.0/8 as an insecure registry and skips verification.
// - startServer({tlsCert, tlsKey}) on the non-loopback address, where dockerd does verify: the
//   push fails with an unknown authority until the CA is installed as
//   /etc/docker/certs.d/<ip>:<port>/ca.crt, then push and pull work.
// dockerd 20.10 reads certs.d only from /etc/docker/certs.d (from $XDG_CONFIG_HOME only in
// rootless mode, which it derives from ROOTLESSKIT_STATE_DIR): no daemon option moves it. The
// test therefore writes a directory named by the server's unique <host>:<port> there and removes
// it (and /etc/docker/certs.d, /etc/docker if it created them) after the test.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, rmdir } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { Agent } from 'undici';
import { makeTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { type Dockerd, startDockerd } from '../helpers/dockerd.js';
import { type TempDir, pidAlive, tempDir } from '../helpers/proc.js';
import { headManifest, httpRequest, skopeo, startRegcache, startRegcacheProcess } from '../helpers/regcache.js';
import { importBusyboxImage, writeBusyboxOciLayout } from '../helpers/rootfs.js';
import { inCI, skipUnless } from '../helpers/tools.js';

const DOCKER_CERTS_D = '/etc/docker/certs.d';

/** This machine's first non-internal IPv4 address, if any. */
function externalIPv4(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

/**
 * Makes dockerd trust `caFile` for `hostPort` (`/etc/docker/certs.d/<hostPort>/ca.crt`, read on
 * every registry lookup, no reload needed) until the test ends; then removes the directory and
 * any parent this created.
 */
async function installDockerCa(t: TestContext, hostPort: string, caFile: string): Promise<void> {
  const created = ['/etc/docker', DOCKER_CERTS_D].filter((d) => !existsSync(d));
  const dir = join(DOCKER_CERTS_D, hostPort);
  assert.equal(existsSync(dir), false, `${dir} must not exist yet`);
  t.after(async () => {
    await rm(dir, { recursive: true, force: true });
    for (const d of created.reverse()) await rmdir(d).catch(() => undefined); // only if empty
  });
  await mkdir(dir, { recursive: true });
  await copyFile(caFile, join(dir, 'ca.crt'));
}

describe('regcache over TLS', { skip: skipUnless(['openssl', 'skopeo', 'docker', 'dockerd', 'containerd', 'runc', 'busybox'], { root: true }) }, () => {
  let work: TempDir;
  let certs: TestCertificates;
  let dockerd: Dockerd;
  const external = externalIPv4();

  before(async () => {
    work = await tempDir('rc-e2e-tls-');
    certs = await makeTestCertificates(work.path, { ips: ['127.0.0.1', ...(external ? [external] : [])] });
    dockerd = await startDockerd();
  });

  after(async () => {
    await dockerd?.stop();
    await work?.cleanup();
  });

  test('regcache serve --tls-cert/--tls-key on 127.0.0.1: skopeo and undici verify against the CA', async (t) => {
    const dir = await tempDir('rc-e2e-tls-cli-', t);
    const rc = await startRegcacheProcess(dir.path, ['--tls-cert', certs.cert, '--tls-key', certs.key]);
    t.after(async () => {
      await rc.stop();
    });
    assert.match(rc.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const certDir = join(work.path, 'skopeo-certs');
    await mkdir(certDir, { recursive: true });
    await copyFile(certs.caCert, join(certDir, 'ca.crt'));
    const image = await writeBusyboxOciLayout(join(dir.path, 'layout'), '1');
    const dest = `docker://${rc.host}/e2e/tls:1`;

    await t.test('undici: trusted with the CA, refused without', async () => {
      const agent = new Agent({ connect: { ca: await readFile(certs.caCert) } });
      try {
        assert.equal((await httpRequest('GET', `${rc.url}/v2/`, { dispatcher: agent })).status, 200);
      } finally {
        await agent.close();
      }
      // The server sends only its own certificate, so without the CA node cannot build a chain.
      await assert.rejects(httpRequest('GET', `${rc.url}/v2/`), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    });

    await t.test('skopeo copy with --dest-tls-verify=true fails without the CA and works with --dest-cert-dir', async () => {
      const refused = await skopeo(work.path, ['copy', '--dest-tls-verify=true', image.skopeoRef, dest], { allowFail: true });
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /x509: certificate signed by unknown authority/);
      await skopeo(work.path, ['copy', '--dest-tls-verify=true', '--dest-cert-dir', certDir, image.skopeoRef, dest]);
      const info = JSON.parse((await skopeo(work.path, ['inspect', '--tls-verify=true', '--cert-dir', certDir, dest])).stdout) as { Digest: string };
      assert.equal(info.Digest, image.manifestDigest);
    });

    await t.test('docker pushes without any CA installed: dockerd skips verification for 127.0.0.0/8', async () => {
      const ref = `${rc.host}/e2e/docker-loopback:1`;
      await importBusyboxImage(dockerd, ref);
      assert.equal(existsSync(join(DOCKER_CERTS_D, rc.host)), false);
      const push = await dockerd.docker(['push', ref]);
      const digest = /^1: digest: (sha256:[0-9a-f]{64})/m.exec(push.stdout)?.[1];
      const agent = new Agent({ connect: { ca: await readFile(certs.caCert) } });
      try {
        assert.equal((await headManifest(rc.url, 'e2e/docker-loopback', '1', { dispatcher: agent })).digest, digest);
      } finally {
        await agent.close();
      }
    });

    await t.test('SIGTERM stops the server with exit code 0', async () => {
      const exit = await rc.stop();
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.equal(pidAlive(rc.child.pid), false);
    });
  });

  test('startServer with tlsCert/tlsKey on a non-loopback address: dockerd verifies, and trusts the CA from certs.d', async (t) => {
    if (external === undefined) {
      const reason = 'no non-loopback IPv4 address: dockerd would skip TLS verification on 127.0.0.1';
      if (inCI()) throw new Error(`CI is set and a test prerequisite is absent: ${reason}`);
      t.skip(reason);
      return;
    }
    const rc = await startRegcache({ registryAddr: `${external}:0`, tlsCert: certs.cert, tlsKey: certs.key }, t);
    assert.equal(rc.url, `https://${rc.host}`);
    const ref = `${rc.host}/e2e/docker-tls:1`;
    await importBusyboxImage(dockerd, ref);

    await t.test('without the CA, docker push fails with an unknown authority', async () => {
      const r = await dockerd.docker(['push', ref], { allowFail: true });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /x509: certificate signed by unknown authority/);
      assert.equal(rc.requests.length, 0, 'no request got past the handshake');
    });

    await t.test('with the CA as /etc/docker/certs.d/<host:port>/ca.crt, push works and the image pulls back', async (tt) => {
      await installDockerCa(tt, rc.host, certs.caCert);
      const push = await dockerd.docker(['push', ref]);
      const digest = /^1: digest: (sha256:[0-9a-f]{64})/m.exec(push.stdout)?.[1];
      assert.ok(digest, push.stdout);
      assert.ok(rc.requests.some((r) => r.method === 'PUT' && r.url === '/v2/e2e/docker-tls/manifests/1' && r.status === 201));
      await dockerd.docker(['rmi', ref]);
      const pull = await dockerd.docker(['pull', ref]);
      assert.match(pull.stdout, new RegExp(`Digest: ${digest}`));
      const out = await dockerd.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'over tls']);
      assert.equal(out.stdout, 'over tls\n');
    });
    assert.equal(existsSync(join(DOCKER_CERTS_D, rc.host)), false, 'the CA was removed from certs.d');
  });

});
