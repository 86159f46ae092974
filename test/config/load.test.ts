// What regcache makes of a distribution configuration: the stock config.yml of registry:2 and
// registry:3 load without an error, each key regcache does not take is named (an error where
// ignoring it would change behaviour a user relies on, a warning otherwise), and the two ports
// map as the README says. The fixtures are the images' own files, byte for byte:
// registry-2-config.yml is config-example.yml of distribution/distribution-library-image before
// commit a1a8847 (copied to /etc/docker/registry/config.yml by the registry:2 images),
// registry-3-config.yml the one after it (copied to /etc/distribution/config.yml by registry:3).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ConfigError, findConfig, loadDistributionConfig, parseGoDuration } from '../../src/config/index.js';
import { tempDir } from '../storage/fixtures.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const REGISTRY_2 = join(FIXTURES, 'registry-2-config.yml');
const REGISTRY_3 = join(FIXTURES, 'registry-3-config.yml');
/** What `:5000` (every interface) becomes: the dual-stack or the IPv4 wildcard. */
const ANY = /^(\[::\]|0\.0\.0\.0):/;

async function configFile(t: import('node:test').TestContext, text: string): Promise<string> {
  const dir = await tempDir(t);
  const file = join(dir, 'config.yml');
  await writeFile(file, text);
  return file;
}

test("registry:2's stock config.yml: no error; registry on :5000 and cache on :5001, every interface; delete off; its unused keys named", () => {
  const c = loadDistributionConfig({ file: REGISTRY_2, via: '--config' }, {});
  assert.deepEqual(c.errors, []);
  assert.match(c.settings.registryAddr.value, ANY);
  assert.match(c.settings.registryAddr.value, /:5000$/);
  assert.match(c.settings.cacheAddr.value, ANY);
  assert.match(c.settings.cacheAddr.value, /:5001$/);
  assert.equal(c.settings.proxy, false);
  assert.equal(c.settings.deleteEnabled, false);
  assert.equal(c.settings.storage?.value, '/var/lib/registry');
  assert.equal(c.settings.logLevel, 'info');
  assert.deepEqual(c.warnings, [`log.fields in ${REGISTRY_2}: ignored: not added to the log lines`, `http.headers in ${REGISTRY_2}: ignored: not added to responses`]);
});

test("registry:3's stock config.yml: no error; http.debug.addr :5001 is the cache port; delete on; log level debug", () => {
  const c = loadDistributionConfig({ file: REGISTRY_3, via: '--config' }, {});
  assert.deepEqual(c.errors, []);
  assert.match(c.settings.registryAddr.value, /:5000$/);
  assert.match(c.settings.cacheAddr.value, /:5001$/);
  assert.equal(c.settings.cacheAddr.name, `http.debug.addr in ${REGISTRY_3}`);
  assert.equal(c.settings.deleteEnabled, true);
  assert.equal(c.settings.logLevel, 'debug');
  assert.deepEqual(c.warnings, [`log.fields in ${REGISTRY_3}: ignored: not added to the log lines`]);
});

test('with proxy.remoteurl, http.addr is the cache of that upstream, with its credentials; the registry port stays on loopback', async (t) => {
  const file = await configFile(t, 'version: 0.1\nhttp:\n  addr: 127.0.0.1:6000\nproxy:\n  remoteurl: https://registry-1.docker.io\n  username: bot\n  password: "s3:cret"\n');
  const c = loadDistributionConfig({ file, via: '--config' }, {});
  assert.deepEqual(c.errors, []);
  assert.equal(c.settings.proxy, true);
  assert.equal(c.settings.cacheAddr.value, '127.0.0.1:6000');
  assert.equal(c.settings.registryAddr.value, '127.0.0.1:0');
  assert.equal(c.settings.upstream, 'docker.io=https://registry-1.docker.io');
  assert.deepEqual(c.settings.credentials, { ns: 'docker.io', username: 'bot', password: 's3:cret' });
  const ghcr = loadDistributionConfig({ file, via: '--config' }, { REGISTRY_PROXY_REMOTEURL: 'https://ghcr.io/' });
  assert.equal(ghcr.settings.upstream, 'ghcr.io=https://ghcr.io');
});

test('keys that would change behaviour users rely on are errors naming the key: another storage driver, token auth, enabled notifications, middleware', async (t) => {
  const file = await configFile(
    t,
    [
      'version: 0.1',
      'storage:',
      '  gcs:',
      '    bucket: b',
      'auth:',
      '  token:',
      '    realm: https://auth',
      'notifications:',
      '  endpoints:',
      '    - name: hook',
      '      url: http://hook',
      'middleware:',
      '  registry:',
      '    - name: redirect',
      'http:',
      '  tls:',
      '    clientcas: [/ca.pem]',
      '',
    ].join('\n'),
  );
  const c = loadDistributionConfig({ file, via: '--config' }, {});
  const keys = c.errors.map((e) => e.split(':')[0]);
  assert.deepEqual(keys.sort(), [`auth.token in ${file}`, `http.tls.clientcas in ${file}`, `middleware in ${file}`, `notifications.endpoints in ${file}`, `storage.gcs in ${file}`].sort());
  assert.match(c.errors.find((e) => e.startsWith('storage.gcs'))!, /another storage driver/);
});

test('an error set by a variable names the variable; a bare driver name counts (REGISTRY_STORAGE=gcs)', () => {
  const c = loadDistributionConfig({ via: 'REGCACHE_CONFIG' }, { REGISTRY_STORAGE: 'gcs', REGISTRY_AUTH_SILLY_REALM: 'x' });
  assert.deepEqual(c.errors.map((e) => e.split(':')[0]).sort(), ['REGISTRY_AUTH_SILLY_REALM', 'storage.gcs (storage set by REGISTRY_STORAGE)']);
});

test('disabled notification endpoints and keys that change nothing here are accepted silently; others are warnings naming them', async (t) => {
  const file = await configFile(
    t,
    [
      'version: 0.1',
      'http:',
      '  secret: s',
      '  host: https://registry.example',
      '  draintimeout: 60s',
      'notifications:',
      '  endpoints:',
      '    - name: off',
      '      url: http://hook',
      '      disabled: true',
      'proxy:',
      '  ttl: 168h',
      'nosuchsection: 1',
      '',
    ].join('\n'),
  );
  const c = loadDistributionConfig({ file, via: '--config' }, {});
  assert.deepEqual(c.errors, []);
  assert.deepEqual(c.warnings.map((w) => w.split(':')[0]).sort(), [`http.draintimeout in ${file}`, `http.host in ${file}`, `nosuchsection in ${file}`, `proxy.ttl in ${file}`].sort());
});

test('storage.maintenance.uploadpurging sets the purge age and interval; enabled: false or dryrun: true purges nothing', () => {
  const base = loadDistributionConfig({ via: 'REGCACHE_CONFIG' }, {});
  assert.equal(base.settings.uploadMaxAgeMs, 168 * 3_600_000, "distribution's default age, 168h");
  assert.equal(base.settings.uploadPurgeIntervalMs, 24 * 3_600_000);
  const set = loadDistributionConfig({ via: 'REGCACHE_CONFIG' }, { REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING: '{enabled: true, age: 2h, interval: 30m, dryrun: false}' });
  assert.equal(set.settings.uploadMaxAgeMs, 2 * 3_600_000);
  assert.equal(set.settings.uploadPurgeIntervalMs, 30 * 60_000);
  for (const env of [{ REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED: 'false' }, { REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN: 'true' }]) {
    assert.equal(loadDistributionConfig({ via: 'REGCACHE_CONFIG' }, env).settings.uploadMaxAgeMs, Number.POSITIVE_INFINITY);
  }
  const bad = loadDistributionConfig({ via: 'REGCACHE_CONFIG' }, { REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: 'a week' });
  assert.match(bad.errors.join('\n'), /REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: "a week" is not a duration/);
  assert.equal(parseGoDuration('1h30m'), 90 * 60_000);
});

test('delete is on only when storage.delete.enabled is the boolean true, as distribution reads it', () => {
  const on = (value: string) => loadDistributionConfig({ via: 'REGCACHE_CONFIG' }, { REGISTRY_STORAGE_DELETE_ENABLED: value }).settings.deleteEnabled;
  assert.equal(on('true'), true);
  assert.equal(on('yes'), true);
  assert.equal(on('"true"'), false, 'a quoted "true" is a string, not a boolean');
  assert.equal(on('false'), false);
  assert.equal(loadDistributionConfig({ via: 'REGCACHE_CONFIG' }, {}).settings.deleteEnabled, false);
});

test('a file that is not version 0.1, not YAML, or missing is an error naming it and the fix', async (t) => {
  const noVersion = await configFile(t, 'http:\n  addr: :5000\n');
  assert.throws(() => loadDistributionConfig({ file: noVersion, via: '--config' }, {}), (e: Error) => e instanceof ConfigError && e.message.includes(noVersion) && /version: 0\.1/.test(e.message));
  const broken = await configFile(t, 'version: 0.1\nhttp: [\n');
  assert.throws(() => loadDistributionConfig({ file: broken, via: '--config' }, {}), /not valid YAML/);
  const dup = await configFile(t, 'version: 0.1\nhttp: {}\nhttp: {}\n');
  assert.throws(() => loadDistributionConfig({ file: dup, via: '--config' }, {}), /not valid YAML/);
  assert.throws(() => loadDistributionConfig({ file: '/no/such/config.yml', via: '--config' }, {}), /--config \/no\/such\/config\.yml: no such file/);
  const dir = await tempDir(t);
  assert.throws(() => loadDistributionConfig({ file: dir, via: '--config' }, {}), /is a directory/);
});

test('REGCACHE_CONFIG: the first listed file that exists, else the variables alone; unset: no distribution configuration', async (t) => {
  const file = await configFile(t, 'version: 0.1\n');
  assert.deepEqual(findConfig(undefined, { REGCACHE_CONFIG: `/no/such.yml:${file}` }), { file, via: 'REGCACHE_CONFIG' });
  assert.deepEqual(findConfig(undefined, { REGCACHE_CONFIG: '/no/such.yml:/none/either.yml' }), { via: 'REGCACHE_CONFIG' });
  assert.equal(findConfig(undefined, {}), undefined);
  assert.deepEqual(findConfig('/x.yml', { REGCACHE_CONFIG: file }), { file: '/x.yml', via: '--config' });
});
