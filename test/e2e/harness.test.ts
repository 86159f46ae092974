// Proves the end-to-end harness with real software only, all on 127.0.0.1: Debian's
// docker-registry on a kernel-chosen port, a private dockerd (busybox image imported, built
// FROM, pushed, pulled back, pulled through registry-mirrors after a SIGHUP reload), skopeo
// with an OCI layout written by the harness, and a private containerd pulling with ctr
// (plain HTTP and through a hosts.toml mirror). Every test checks that what it started is gone.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startContainerd, sweepAbandonedInstances, writeHostsToml } from '../helpers/containerd.js';
import { type Dockerd, startDockerd } from '../helpers/dockerd.js';
import { type ChildHandle, type TempDir, freePort, pidAlive, processesUnder, run, startProcess, stopPid, tempDir, waitFor, waitForHttp } from '../helpers/proc.js';
import { type OciLayoutImage, importBusyboxImage, writeBusyboxOciLayout } from '../helpers/rootfs.js';
import { privateToolEnv, skipUnless, toolPath } from '../helpers/tools.js';

/** Debian's distribution registry on 127.0.0.1:<free port>, storage in a temp dir. */
interface Registry {
  url: string;
  /** `127.0.0.1:<port>`, as used in image references. */
  host: string;
  child: ChildHandle;
  dir: TempDir;
}

async function startRegistry(): Promise<Registry> {
  const dir = await tempDir('rc-registry-');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = {
      version: 0.1,
      log: { level: 'info', accesslog: { disabled: false } },
      storage: { filesystem: { rootdirectory: join(dir.path, 'storage') }, delete: { enabled: true } },
      http: { addr: `127.0.0.1:${port}` },
    };
    const configFile = join(dir.path, 'config.yml'); // JSON is YAML
    await writeFile(configFile, JSON.stringify(config));
    const child = await startProcess(toolPath('docker-registry'), ['serve', configFile], {
      logFile: join(dir.path, `registry-${attempt}.log`),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, // no REGISTRY_* overrides
    });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHttp(`${url}/v2/`, { process: child, statuses: [200] });
      return { url, host: `127.0.0.1:${port}`, child, dir };
    } catch (err) {
      await child.stop();
      // the port may have been taken between freePort() and the registry's bind
      if (attempt >= 3 || !child.log().includes('address already in use')) {
        await dir.cleanup();
        throw err;
      }
    }
  }
}

/**
 * Waits (up to 5 s) until the registry's access log shows a request with this method and
 * path prefix: distribution writes the line only after it answered.
 */
async function assertRequested(reg: Registry, method: string, pathPrefix: string): Promise<void> {
  await waitFor(() => reg.child.log(1 << 20).includes(`"${method} ${pathPrefix}`), {
    what: `${method} ${pathPrefix} in the registry's access log`,
    timeoutMs: 5_000,
  });
}

/** Runs skopeo with its state (auth file, blob-info cache) in `dir`, needing no policy.json. */
function skopeo(dir: string, args: string[]) {
  return run(toolPath('skopeo'), ['--insecure-policy', ...args], { env: privateToolEnv(dir) });
}

const sha256 = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

describe('e2e harness', { skip: skipUnless(['docker-registry', 'skopeo', 'busybox']) }, () => {
  let reg: Registry;
  let work: TempDir;
  let image: OciLayoutImage;

  before(async () => {
    reg = await startRegistry();
    work = await tempDir('rc-harness-');
    image = await writeBusyboxOciLayout(join(work.path, 'layout'), '1');
    for (const repo of ['harness/oci:1', 'library/harness-mirror:1']) {
      await skopeo(work.path, ['copy', '--dest-tls-verify=false', image.skopeoRef, `docker://${reg.host}/${repo}`]);
    }
  });

  after(async () => {
    await reg?.child.stop();
    await reg?.dir.cleanup();
    await work?.cleanup();
    assert.equal(reg && pidAlive(reg.child.pid), false, 'registry still running');
  });

  test('docker-registry answers GET /v2/ on a free 127.0.0.1 port', async () => {
    const r = await waitForHttp(`${reg.url}/v2/`, { statuses: [200] });
    assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.match(reg.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test('skopeo pushed the OCI layout unchanged and copies it back', async () => {
    const raw = await skopeo(work.path, ['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/harness/oci:1`]);
    assert.equal(sha256(raw.stdout), image.manifestDigest);
    const back = join(work.path, 'back');
    await skopeo(work.path, ['copy', '--src-tls-verify=false', `docker://${reg.host}/harness/oci:1`, `oci:${back}:1`]);
    const index = JSON.parse(await readFile(join(back, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    assert.equal(index.manifests[0]?.digest, image.manifestDigest);
    await assertRequested(reg, 'GET', `/v2/harness/oci/blobs/${image.layerDigest}`);
  });

  test('ctr pulls with --plain-http and through a hosts.toml mirror, then runs the image', { skip: skipUnless(['containerd', 'ctr', 'runc'], { root: true }) }, async (t) => {
    const ctrd = await startContainerd();
    t.after(() => ctrd.stop());
    const direct = `${reg.host}/harness/oci:1`;
    await ctrd.ctr(['images', 'pull', '--plain-http', direct]);
    const hosts = join(ctrd.dir, 'hosts');
    const file = await writeHostsToml(hosts, 'docker.io', reg.url);
    assert.match(await readFile(file, 'utf8'), /\[host\."http:\/\/127\.0\.0\.1:\d+"\]/);
    const viaMirror = 'docker.io/library/harness-mirror:1';
    await ctrd.ctr(['images', 'pull', '--hosts-dir', hosts, viaMirror]);
    await assertRequested(reg, 'HEAD', '/v2/library/harness-mirror/manifests/1?ns=docker.io');
    const ls = await ctrd.ctr(['images', 'ls', '-q']);
    assert.deepEqual(ls.stdout.trim().split('\n').sort(), [direct, viaMirror].sort());
    const out = await ctrd.ctr(['run', ...ctrd.runFlags, '--rm', '--net-host', viaMirror, 'harness-run', 'cat', '/etc/passwd']);
    assert.match(out.stdout, /^root:x:0:0:/);
    await ctrd.stop();
    assert.equal(pidAlive(ctrd.pid), false);
    assert.deepEqual(processesUnder(ctrd.dir), []);
  });

  test('a containerd abandoned by a SIGKILLed test process is swept away (as every start does)', { skip: skipUnless(['containerd', 'ctr', 'runc'], { root: true }) }, async () => {
    const report = join(work.path, 'abandoned.json');
    const ref = `${reg.host}/harness/oci:1`;
    const script = `
      import { writeFileSync } from 'node:fs';
      import { startContainerd } from ${JSON.stringify(new URL('../helpers/containerd.ts', import.meta.url).href)};
      const c = await startContainerd();
      await c.ctr(['images', 'pull', '--plain-http', ${JSON.stringify(ref)}]);
      await c.ctr(['run', '-d', ...c.runFlags, '--net-host', ${JSON.stringify(ref)}, 'abandoned', 'sleep', '300']);
      writeFileSync(${JSON.stringify(report)}, JSON.stringify({ dir: c.dir, ns: c.namespace }));
      setInterval(() => {}, 1000);`;
    const child = await startProcess(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      name: 'test process',
      logFile: join(work.path, 'abandoned.log'),
    });
    const { dir, ns } = await waitFor(
      async () => JSON.parse(await readFile(report, 'utf8')) as { dir: string; ns: string },
      { process: child, what: 'the child to start containerd and a container', timeoutMs: 30_000 },
    );
    const containerPids = await readFile(`/sys/fs/cgroup/pids/${ns}/abandoned/cgroup.procs`, 'utf8').catch(() =>
      readFile(`/sys/fs/cgroup/${ns}/abandoned/cgroup.procs`, 'utf8'));
    assert.notEqual(containerPids.trim(), '', 'the container runs in cgroup /<namespace>/<id>');
    process.kill(child.pid, 'SIGKILL');
    await child.exited;
    assert.notDeepEqual(processesUnder(dir), [], 'the shim outlives the killed test process');
    await sweepAbandonedInstances();
    assert.deepEqual(processesUnder(dir), []);
    for (const pid of containerPids.trim().split('\n').map(Number)) assert.equal(pidAlive(pid), false, `container process ${pid}`);
    assert.equal(existsSync(dir), false, `${dir} removed`);
    assert.equal(existsSync(`/sys/fs/cgroup/pids/${ns}`) || existsSync(`/sys/fs/cgroup/${ns}`), false, 'cgroup removed');
  });

  describe('dockerd', { skip: skipUnless(['docker', 'dockerd', 'containerd', 'runc'], { root: true }) }, () => {
    let dockerd: Dockerd;

    before(async () => {
      dockerd = await startDockerd();
      await importBusyboxImage(dockerd, 'harness/busybox:1');
    });

    after(async () => {
      const { pid, dir, containerd } = dockerd ?? {};
      await dockerd?.stop();
      if (pid !== undefined) {
        assert.equal(pidAlive(pid), false, 'dockerd still running');
        assert.equal(pidAlive(containerd!.pid), false, 'its containerd still running');
        assert.deepEqual(processesUnder(dir!), []);
      }
    });

    test('the imported busybox image runs', async () => {
      const r = await dockerd.docker(['run', '--rm', '--network', 'none', 'harness/busybox:1', 'sh', '-c', 'echo hello; id -u']);
      assert.equal(r.stdout, 'hello\n0\n');
    });

    test('docker build FROM the busybox image with a RUN step (classic builder and BuildKit)', async () => {
      const ctx = join(dockerd.dir, 'ctx-build');
      await mkdir(ctx);
      await writeFile(join(ctx, 'Dockerfile'), 'FROM harness/busybox:1\nRUN echo hi > /x\n');
      await dockerd.docker(['build', '-t', 'harness/built:classic', ctx]);
      // without a bridge network BuildKit needs --network none (or host) for RUN
      await dockerd.docker(['build', '--network', 'none', '-t', 'harness/built:buildkit', ctx], { env: { DOCKER_BUILDKIT: '1' } });
      for (const tag of ['classic', 'buildkit']) {
        const r = await dockerd.docker(['run', '--rm', '--network', 'none', `harness/built:${tag}`, 'cat', '/x']);
        assert.equal(r.stdout, 'hi\n');
      }
    });

    test('docker push to the registry, rmi everything, pull back and run', async () => {
      const ctx = join(dockerd.dir, 'ctx-push');
      await mkdir(ctx);
      await writeFile(join(ctx, 'Dockerfile'), 'FROM harness/busybox:1\nRUN echo pushed > /x\n');
      const ref = `${reg.host}/harness/pushed:1`;
      await dockerd.docker(['build', '-t', ref, ctx]);
      await dockerd.docker(['push', ref]);
      await dockerd.docker(['rmi', ref]);
      await dockerd.docker(['rmi', 'harness/busybox:1']);
      await dockerd.docker(['image', 'prune', '--all', '--force']);
      assert.equal((await dockerd.docker(['images', '-q'])).stdout, '');
      const pull = await dockerd.docker(['pull', ref]);
      assert.match(pull.stdout, /Pull complete/, 'layers were downloaded, not found locally');
      await assertRequested(reg, 'GET', '/v2/harness/pushed/blobs/sha256:');
      const r = await dockerd.docker(['run', '--rm', '--network', 'none', ref, 'cat', '/x']);
      assert.equal(r.stdout, 'pushed\n');
      await importBusyboxImage(dockerd, 'harness/busybox:1'); // for the tests after this one
    });

    test('reload() applies registry-mirrors from daemon.json: docker.io pulls go to the mirror', async () => {
      const mirrors = async () => JSON.parse((await dockerd.docker(['info', '--format', '{{json .RegistryConfig.Mirrors}}'])).stdout) as unknown;
      assert.deepEqual(await mirrors(), []);
      await dockerd.reload({ 'registry-mirrors': [reg.url] });
      assert.deepEqual(await mirrors(), [`${reg.url}/`]);
      await dockerd.docker(['pull', 'harness-mirror:1']);
      await assertRequested(reg, 'HEAD', '/v2/library/harness-mirror/manifests/1');
      await assertRequested(reg, 'GET', `/v2/library/harness-mirror/blobs/${image.layerDigest}`);
      const r = await dockerd.docker(['run', '--rm', '--network', 'none', 'harness-mirror:1', 'echo', 'via mirror']);
      assert.equal(r.stdout, 'via mirror\n');
    });

    test('a second dockerd runs side by side and stop() leaves nothing behind', async () => {
      const second = await startDockerd();
      try {
        assert.notEqual(second.socket, dockerd.socket);
        assert.notEqual(second.containerd.address, dockerd.containerd.address);
        await importBusyboxImage(second, 'harness/busybox:2');
        const detached = await second.docker(['run', '-d', '--network', 'none', 'harness/busybox:2', 'sleep', '300']);
        assert.match(detached.stdout, /^[0-9a-f]{64}\n$/);
        const images = await dockerd.docker(['images', '--format', '{{.Repository}}:{{.Tag}}']);
        assert.doesNotMatch(images.stdout, /harness\/busybox:2/);
      } finally {
        await second.stop(); // also stops the container left running above
      }
      assert.equal(pidAlive(second.pid), false);
      assert.equal(pidAlive(second.containerd.pid), false);
      assert.deepEqual(processesUnder(second.dir), []);
      await dockerd.docker(['version']);
    });
  });
});

describe('process helpers', () => {
  test('stop() escalates to SIGKILL when SIGTERM is ignored, and the PID is gone after', async (t) => {
    const dir = await tempDir('rc-proc-', t);
    const child = await startProcess(process.execPath, ['-e', "process.on('SIGTERM', () => console.log('ignored')); console.log('up'); setInterval(() => {}, 1000)"], {
      logFile: join(dir.path, 'child.log'),
    });
    await waitFor(() => child.log().includes('up'), { process: child, what: 'child to start' });
    const started = Date.now();
    const exit = await child.stop(300);
    assert.equal(exit.signal, 'SIGKILL');
    assert.ok(Date.now() - started >= 300, 'waited for the timeout before SIGKILL');
    assert.match(child.log(), /ignored/);
    assert.equal(pidAlive(child.pid), false);
  });

  test('waitFor fails fast with the log when the awaited process exits', async (t) => {
    const dir = await tempDir('rc-proc-', t);
    const child = await startProcess(process.execPath, ['-e', "console.error('boom'); process.exit(3)"], { logFile: join(dir.path, 'child.log') });
    await assert.rejects(waitFor(() => false, { process: child, what: 'nothing', timeoutMs: 10_000 }), /exited \(code 3\)[\s\S]*boom/);
  });

  test('stopPid stops a process that is not our child', async (t) => {
    const dir = await tempDir('rc-proc-', t);
    const pidFile = join(dir.path, 'pid');
    // a grandchild: sh starts node in the background and exits
    await run('sh', ['-c', `"${process.execPath}" -e "setInterval(() => {}, 1000)" >/dev/null 2>&1 & echo $! > ${pidFile}`]);
    const pid = Number(await readFile(pidFile, 'utf8'));
    assert.ok(pidAlive(pid), 'grandchild started');
    assert.equal(await stopPid(pid, 2_000), true);
    assert.equal(pidAlive(pid), false);
  });

  test('freePort gives usable ports', async () => {
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    for (const p of ports) assert.ok(p > 0 && p < 65536, `port ${p}`);
  });

  test('tempDir paths leave room for unix sockets', async (t) => {
    const dir = await tempDir('rc-dockerd-', t);
    assert.ok(Buffer.byteLength(join(dir.path, 'ctrd', 'containerd.sock.ttrpc')) < 108, dir.path);
  });
});
