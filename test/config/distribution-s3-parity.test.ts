// The same storage.s3 configuration given to Debian's distribution (docker-registry 2.8) and to
// regcache's config layer, and the S3 requests compared at a fake S3 endpoint (an HTTP server
// that records each request and answers 404 NoSuchKey): the scheme (plain HTTP with
// `secure: false` and an endpoint without one), path-style addressing (2.8 always uses it with
// a regionendpoint), the bucket and the rootdirectory prefix, the access key and the region of
// the Signature V4 scope. regcache's side is its S3 client opened with the settings read
// (storage/s3/location.ts), so no S3 service is needed. Also: the REGISTRY_* variables alone
// over a file with storage.filesystem (REGISTRY_STORAGE=s3 replaces it), and a variable adding
// s3 beside the file's filesystem driver, which both refuse.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { loadDistributionConfig } from '../../src/config/index.js';
import { openS3Location } from '../../src/storage/s3/location.js';
import { DISTRIBUTION_BINARY } from '../helpers/distribution.js';
import { freePort, tailFile, terminateChild } from '../helpers/proc.js';
import { skipUnless } from '../helpers/tools.js';
import { tempDir } from '../storage/fixtures.js';

const skip = skipUnless(['docker-registry']);

interface Seen {
  method: string;
  path: string;
  host: string;
  /** `AKID/eu-west-1/s3/aws4_request`: the credential scope without its date. */
  scope: string;
}

/** A fake S3 endpoint on 127.0.0.1 recording what is asked of it. */
async function fakeS3(t: TestContext): Promise<{ host: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const credential = /Credential=([^,]+)/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const [key = '', , ...rest] = credential.split('/');
    seen.push({ method: req.method ?? '', path: (req.url ?? '').split('?')[0]!, host: req.headers.host ?? '', scope: [key, ...rest].join('/') });
    req.resume();
    res.writeHead(404, { 'content-type': 'application/xml' });
    res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>none</Message></Error>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** Runs distribution with `config` and `env`; its base URL once it answers, or its log when it exits first. */
async function distribution(t: TestContext, dir: string, config: string, env: Record<string, string>): Promise<{ url?: string; log: string }> {
  const port = await freePort();
  const logFile = join(dir, 'registry.log');
  const fd = openSync(logFile, 'a');
  const child = spawn(DISTRIBUTION_BINARY, ['serve', config], { stdio: ['ignore', fd, fd], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`, ...env } });
  closeSync(fd);
  t.after(() => terminateChild(child, 5000));
  const url = `http://127.0.0.1:${port}`;
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; ) {
    if (child.exitCode !== null || child.signalCode !== null) return { log: tailFile(logFile) };
    try {
      const res = await request(`${url}/v2/`, { headersTimeout: 1000, bodyTimeout: 1000 });
      await res.body.dump();
      return { url, log: '' };
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`distribution did not start:\n${tailFile(logFile)}`);
}

/** What regcache's S3 client, opened with the settings the configuration gives, asks for key `probe`. */
async function regcacheAsks(c: ReturnType<typeof loadDistributionConfig>): Promise<void> {
  assert.deepEqual(c.errors, []);
  const location = openS3Location({ ...c.settings.s3!.value });
  try {
    await location.client.send(new GetObjectCommand({ Bucket: location.bucket, Key: `${location.prefix}probe` }));
  } catch (err) {
    assert.equal((err as Error).name, 'NoSuchKey', String(err));
  } finally {
    location.client.destroy();
  }
}

describe('storage.s3: regcache reaches the bucket as distribution 2.8 does', { skip, concurrency: false }, () => {
  test('config.yml with bucket, rootdirectory, region, a regionendpoint without a scheme, keys and secure: false: plain HTTP, path-style, same prefix and signing scope', async (t) => {
    const s3 = await fakeS3(t);
    const dir = await tempDir(t);
    const config = join(dir, 'config.yml');
    const lines = ['version: 0.1', 'storage:', '  s3:', '    bucket: regbucket', '    rootdirectory: /some/prefix', '    region: eu-west-1', `    regionendpoint: ${s3.host}`];
    await writeFile(config, [...lines, '    accesskey: AKIDEXAMPLE', '    secretkey: secret', '    secure: false', ''].join('\n'));
    const d = await distribution(t, dir, config, {});
    assert.ok(d.url, d.log);
    const res = await request(`${d.url}/v2/app/manifests/latest`);
    await res.body.dump();
    assert.equal(res.statusCode, 404);
    const theirs = s3.seen.find((r) => r.path.endsWith('/current/link'));
    assert.ok(theirs, JSON.stringify(s3.seen));
    assert.equal(theirs.path, '/regbucket/some/prefix/docker/registry/v2/repositories/app/_manifests/tags/latest/current/link');

    const before = s3.seen.length;
    await regcacheAsks(loadDistributionConfig({ file: config, via: '--config' }, {}));
    const ours = s3.seen.slice(before);
    assert.ok(ours.length > 0, 'regcache reached the fake endpoint over plain HTTP');
    for (const r of ours) {
      assert.deepEqual([r.method, r.path, r.host, r.scope], ['GET', '/regbucket/some/prefix/probe', theirs.host, theirs.scope]);
    }
    assert.equal(theirs.scope, 'AKIDEXAMPLE/eu-west-1/s3/aws4_request');
  });

  test('REGISTRY_STORAGE=s3 and REGISTRY_STORAGE_S3_* over a file with storage.filesystem: both use the bucket; without REGISTRY_STORAGE both refuse two drivers', async (t) => {
    const s3 = await fakeS3(t);
    const dir = await tempDir(t);
    const config = join(dir, 'config.yml');
    await writeFile(config, ['version: 0.1', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'fs')}`, ''].join('\n'));
    const vars = {
      REGISTRY_STORAGE_S3_BUCKET: 'regbucket',
      REGISTRY_STORAGE_S3_REGION: 'eu-west-1',
      REGISTRY_STORAGE_S3_REGIONENDPOINT: `http://${s3.host}`,
      REGISTRY_STORAGE_S3_ACCESSKEY: 'AKIDEXAMPLE',
      REGISTRY_STORAGE_S3_SECRETKEY: 'secret',
    };
    const d = await distribution(t, dir, config, { REGISTRY_STORAGE: 's3', ...vars });
    assert.ok(d.url, d.log);
    await (await request(`${d.url}/v2/app/manifests/latest`)).body.dump();
    const theirs = s3.seen.find((r) => r.path.endsWith('/current/link'));
    assert.equal(theirs?.path, '/regbucket/docker/registry/v2/repositories/app/_manifests/tags/latest/current/link');
    const before = s3.seen.length;
    await regcacheAsks(loadDistributionConfig({ file: config, via: '--config' }, { REGISTRY_STORAGE: 's3', ...vars }));
    for (const r of s3.seen.slice(before)) assert.deepEqual([r.path, r.scope], ['/regbucket/probe', theirs!.scope]);

    const refused = await distribution(t, dir, config, vars);
    assert.equal(refused.url, undefined);
    assert.match(refused.log, /multiple storage drivers specified in configuration or environment/);
    const ours = loadDistributionConfig({ file: config, via: '--config' }, vars);
    assert.match(ours.errors.join('\n'), /^storage: must provide exactly one storage type/);
  });
});
