// distribution's `storage.s3` (config.yml or REGISTRY_STORAGE_S3_* variables) as regcache's S3
// storage settings: the bucket and rootdirectory as s3://bucket/prefix, the endpoint with the
// scheme `secure` gives it (the AWS SDK's AddScheme), path-style addressing with an endpoint
// (what 2.8 always does), static credentials when both keys are set; each parameter regcache
// does not take named (an error where ignoring it would change what the user relies on: SSE-KMS,
// a canned ACL, FIPS endpoints...); two drivers refused as distribution refuses them.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { KEY_POLICY, loadDistributionConfig } from '../../src/config/index.js';
import { tempDir } from '../storage/fixtures.js';

async function configFile(t: TestContext, lines: string[]): Promise<string> {
  const file = join(await tempDir(t), 'config.yml');
  await writeFile(file, ['version: 0.1', ...lines, ''].join('\n'));
  return file;
}

const fromEnv = (env: Record<string, string>) => loadDistributionConfig({ via: 'REGCACHE_CONFIG' }, env);
const keysOf = (messages: string[]) => messages.map((m) => m.split(':')[0]).sort();

test('storage.s3 in config.yml: s3://bucket/prefix, an http endpoint (secure: false), path-style, region and static credentials, each named by its key', async (t) => {
  const file = await configFile(t, [
    'storage:',
    '  s3:',
    '    bucket: regbucket',
    '    rootdirectory: /some/prefix/',
    '    region: eu-west-1',
    '    regionendpoint: minio.internal:9000',
    '    accesskey: AKIDEXAMPLE',
    '    secretkey: "s3cr:et"',
    '    secure: false',
    '  delete:',
    '    enabled: true',
  ]);
  const c = loadDistributionConfig({ file, via: '--config' }, {});
  assert.deepEqual(c.errors, []);
  assert.deepEqual(c.warnings, []);
  const at = (key: string) => `storage.s3.${key} in ${file}`;
  assert.deepEqual(c.settings.s3, {
    value: {
      url: 's3://regbucket/some/prefix',
      endpoint: 'http://minio.internal:9000',
      region: 'eu-west-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 's3cr:et' },
    },
    name: `storage.s3 in ${file}`,
    names: {
      url: `${at('bucket')}, ${at('rootdirectory')}`,
      endpoint: `${at('regionendpoint')}, ${at('secure')}`,
      region: at('region'),
      forcePathStyle: `${at('regionendpoint')} (path-style addressing, as distribution 2.8 always uses with an endpoint)`,
      credentials: `${at('accesskey')}, ${at('secretkey')}`,
    },
  });
  assert.equal(c.settings.storage, undefined, 'no local storage directory with s3');
  assert.equal(c.settings.redirect, true, 'distribution redirects blob GETs to presigned URLs unless storage.redirect.disable');
  assert.equal(c.settings.deleteEnabled, true);
});

test('the same through REGISTRY_STORAGE=s3 and REGISTRY_STORAGE_S3_* only, over the stock file whose storage section it replaces', () => {
  const env = {
    REGISTRY_STORAGE: 's3',
    REGISTRY_STORAGE_S3_BUCKET: 'regbucket',
    REGISTRY_STORAGE_S3_ROOTDIRECTORY: '/some/prefix',
    REGISTRY_STORAGE_S3_REGION: 'eu-west-1',
    REGISTRY_STORAGE_S3_REGIONENDPOINT: 'minio.internal:9000',
    REGISTRY_STORAGE_S3_ACCESSKEY: 'AKIDEXAMPLE',
    REGISTRY_STORAGE_S3_SECRETKEY: '"s3cr:et"',
    REGISTRY_STORAGE_S3_SECURE: 'false',
    REGISTRY_STORAGE_REDIRECT_DISABLE: 'true',
  };
  const stock = fileURLToPath(new URL('./fixtures/registry-2-config.yml', import.meta.url));
  for (const c of [fromEnv(env), loadDistributionConfig({ file: stock, via: '--config' }, env)]) {
    assert.deepEqual(c.errors, []);
    assert.deepEqual(c.settings.s3?.value, {
      url: 's3://regbucket/some/prefix',
      endpoint: 'http://minio.internal:9000',
      region: 'eu-west-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 's3cr:et' },
    });
    assert.equal(c.settings.s3?.name, 'storage.s3 (storage set by REGISTRY_STORAGE)');
    assert.equal(c.settings.s3?.names.region, 'REGISTRY_STORAGE_S3_REGION');
    assert.equal(c.settings.s3?.names.endpoint, 'REGISTRY_STORAGE_S3_REGIONENDPOINT, REGISTRY_STORAGE_S3_SECURE');
    assert.equal(c.settings.storage, undefined, "REGISTRY_STORAGE replaced the file's storage.filesystem");
    assert.equal(c.settings.redirect, false);
  }
  // Without REGISTRY_STORAGE, the variables alone make the section (no file): names are the variables.
  const { REGISTRY_STORAGE: _, ...only } = env;
  const c = fromEnv(only);
  assert.deepEqual(c.errors, []);
  assert.equal(c.settings.s3?.value.url, 's3://regbucket/some/prefix');
  assert.match(c.settings.s3!.name, /REGISTRY_STORAGE_S3_BUCKET/);
  assert.equal(c.settings.s3?.names.url, 'REGISTRY_STORAGE_S3_BUCKET, REGISTRY_STORAGE_S3_ROOTDIRECTORY');
});

test('the endpoint: a scheme given wins over secure (as the AWS SDK adds one only when missing), https by default; forcepathstyle as given; no endpoint, AWS', () => {
  const s3 = (env: Record<string, string>) => fromEnv({ REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_BUCKET: 'b-1', ...env });
  assert.equal(s3({ REGISTRY_STORAGE_S3_REGIONENDPOINT: 'https://s3.example:443', REGISTRY_STORAGE_S3_SECURE: 'false' }).settings.s3?.value.endpoint, 'https://s3.example:443');
  assert.equal(s3({ REGISTRY_STORAGE_S3_REGIONENDPOINT: 'http://minio:9000' }).settings.s3?.value.endpoint, 'http://minio:9000');
  assert.equal(s3({ REGISTRY_STORAGE_S3_REGIONENDPOINT: 'minio:9000' }).settings.s3?.value.endpoint, 'https://minio:9000');
  assert.equal(s3({ REGISTRY_STORAGE_S3_REGIONENDPOINT: 'minio:9000', REGISTRY_STORAGE_S3_SECURE: '"False"' }).settings.s3?.value.endpoint, 'http://minio:9000', 'a string strconv.ParseBool reads');
  const virtual = s3({ REGISTRY_STORAGE_S3_REGIONENDPOINT: 'minio:9000', REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'false' });
  assert.equal(virtual.settings.s3?.value.forcePathStyle, false);
  assert.equal(virtual.settings.s3?.names.forcePathStyle, 'REGISTRY_STORAGE_S3_FORCEPATHSTYLE');
  assert.equal(virtual.settings.s3?.value.region, undefined, "3.x needs no region with an endpoint: the AWS SDK's chain gives it");
  const aws = s3({ REGISTRY_STORAGE_S3_REGION: 'us-east-2' });
  assert.deepEqual(aws.settings.s3?.value, { url: 's3://b-1', region: 'us-east-2' });
  assert.deepEqual(aws.errors, []);
  const plain = s3({ REGISTRY_STORAGE_S3_REGION: 'us-east-2', REGISTRY_STORAGE_S3_SECURE: 'false' });
  assert.deepEqual(plain.warnings, ['REGISTRY_STORAGE_S3_SECURE: ignored without a regionendpoint: regcache reaches AWS S3 over HTTPS']);
  assert.equal(s3({ REGISTRY_STORAGE_S3_REGION: 'us-east-2', REGISTRY_STORAGE_S3_ROOTDIRECTORY: '/' }).settings.s3?.value.url, 's3://b-1');
});

test('credentials: both keys or neither (the AWS SDK chain); one alone is named and ignored, as distribution ignores it', () => {
  const c = fromEnv({ REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_BUCKET: 'b-1', REGISTRY_STORAGE_S3_REGION: 'eu-west-1', REGISTRY_STORAGE_S3_ACCESSKEY: 'AKID' });
  assert.deepEqual(c.errors, []);
  assert.equal(c.settings.s3?.value.credentials, undefined);
  assert.deepEqual(keysOf(c.warnings), ['REGISTRY_STORAGE_S3_ACCESSKEY']);
  const none = fromEnv({ REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_BUCKET: 'b-1', REGISTRY_STORAGE_S3_REGION: 'eu-west-1', REGISTRY_STORAGE_S3_ACCESSKEY: '', REGISTRY_STORAGE_S3_SECRETKEY: '' });
  assert.deepEqual([none.errors, none.warnings, none.settings.s3?.value.credentials], [[], [], undefined]);
});

test('what distribution refuses to start with: no bucket, no region without an endpoint, a parameter that is not a boolean', () => {
  const c = fromEnv({ REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_SECURE: 'maybe' });
  assert.deepEqual(keysOf(c.errors), ['REGISTRY_STORAGE_S3_SECURE', 'storage.s3.bucket (storage set by REGISTRY_STORAGE)', 'storage.s3.region (storage set by REGISTRY_STORAGE)']);
  assert.match(c.errors.join('\n'), /no bucket parameter provided/);
  assert.match(c.errors.join('\n'), /no region parameter provided/);
  assert.match(c.errors.join('\n'), /the secure parameter should be a boolean/);
  assert.equal(c.settings.s3, undefined);
  const bad = fromEnv({ REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_BUCKET: 'My_Bucket', REGISTRY_STORAGE_S3_REGION: 'eu-west-1' });
  assert.deepEqual(keysOf(bad.errors), ['REGISTRY_STORAGE_S3_BUCKET']);
});

test('parameters regcache does not take are named: errors where ignoring them changes what the user relies on, warnings otherwise, accepted when they change nothing', async (t) => {
  const file = await configFile(t, [
    'storage:',
    '  s3:',
    '    bucket: regbucket',
    '    region: eu-west-1',
    '    v4auth: false',
    '    keyid: arn:aws:kms:eu-west-1:1:key/k',
    '    encrypt: true',
    '    objectacl: public-read',
    '    usefipsendpoint: true',
    '    storageclass: STANDARD_IA',
    '    skipverify: true',
    '    useragent: me',
    '    accelerate: true',
    '    usedualstack: true',
    '    loglevel: debug',
    '    redirectendpoint: https://cdn.example',
    '    chunksize: 10485760',
    '    multipartcopychunksize: 33554432',
    '    multipartcopymaxconcurrency: 100',
    '    multipartcopythresholdsize: 33554432',
    '    sessiontoken: t',
    '    nosuchparameter: 1',
  ]);
  const c = loadDistributionConfig({ file, via: '--config' }, {});
  const at = (...keys: string[]) => keys.map((k) => `storage.s3.${k} in ${file}`).sort();
  assert.deepEqual(keysOf(c.errors), at('keyid', 'objectacl', 'redirectendpoint', 'usefipsendpoint', 'v4auth'));
  assert.deepEqual(keysOf(c.warnings), at('accelerate', 'loglevel', 'nosuchparameter', 'skipverify', 'storageclass', 'usedualstack', 'useragent'));
  assert.match(c.errors.join('\n'), /SSE-KMS/);
  assert.match(c.warnings.join('\n'), /NODE_EXTRA_CA_CERTS/);
});

test('encrypt without keyid: on AWS a warning (S3 encrypts new objects by default), with an endpoint an error; storage classes and ACLs that change nothing are accepted', () => {
  const base = { REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_BUCKET: 'b-1', REGISTRY_STORAGE_S3_REGION: 'eu-west-1', REGISTRY_STORAGE_S3_ENCRYPT: 'true' };
  const aws = fromEnv(base);
  assert.deepEqual([aws.errors, keysOf(aws.warnings)], [[], ['REGISTRY_STORAGE_S3_ENCRYPT']]);
  const minio = fromEnv({ ...base, REGISTRY_STORAGE_S3_REGIONENDPOINT: 'http://minio:9000' });
  assert.deepEqual(keysOf(minio.errors), ['REGISTRY_STORAGE_S3_ENCRYPT']);
  const quiet = fromEnv({ ...base, REGISTRY_STORAGE_S3_ENCRYPT: 'false', REGISTRY_STORAGE_S3_STORAGECLASS: 'standard', REGISTRY_STORAGE_S3_OBJECTACL: 'private', REGISTRY_STORAGE_S3_V4AUTH: 'true', REGISTRY_STORAGE_S3_LOGLEVEL: 'off', REGISTRY_STORAGE_S3_SKIPVERIFY: 'false' });
  assert.deepEqual([quiet.errors, quiet.warnings], [[], []]);
  const none = fromEnv({ ...base, REGISTRY_STORAGE_S3_ENCRYPT: 'false', REGISTRY_STORAGE_S3_STORAGECLASS: 'NONE' });
  assert.deepEqual([none.errors, none.warnings], [[], []]);
  const glacier = fromEnv({ ...base, REGISTRY_STORAGE_S3_ENCRYPT: 'false', REGISTRY_STORAGE_S3_STORAGECLASS: 'GLACIER' });
  assert.deepEqual(keysOf(glacier.errors), ['REGISTRY_STORAGE_S3_STORAGECLASS'], 'GLACIER is not an instant-retrieval class: distribution refuses it');
});

test("storage.s3aws is the same driver (distribution registers both names); storage.redirect must hold a boolean disable, as distribution's app requires", () => {
  const c = fromEnv({ REGISTRY_STORAGE: 's3aws', REGISTRY_STORAGE_S3AWS_BUCKET: 'b-1', REGISTRY_STORAGE_S3AWS_REGION: 'eu-west-1' });
  assert.deepEqual(c.errors, []);
  assert.equal(c.settings.s3?.value.url, 's3://b-1');
  const r = fromEnv({ REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_BUCKET: 'b-1', REGISTRY_STORAGE_S3_REGION: 'eu-west-1', REGISTRY_STORAGE_REDIRECT_DISABLE: '"true"' });
  assert.deepEqual(keysOf(r.errors), ['REGISTRY_STORAGE_REDIRECT_DISABLE']);
  const endpointOff = fromEnv({ REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_BUCKET: 'b-1', REGISTRY_STORAGE_S3_REGION: 'eu-west-1', REGISTRY_STORAGE_S3_REDIRECTENDPOINT: 'https://cdn.example', REGISTRY_STORAGE_REDIRECT_DISABLE: 'true' });
  assert.deepEqual([endpointOff.errors, endpointOff.warnings], [[], []], 'redirectendpoint is unused with redirects disabled, by distribution too');
});

test('storage.filesystem and storage.s3 together: an error naming both, from the file or a variable added to it, as distribution refuses them', async (t) => {
  const file = await configFile(t, ['storage:', '  filesystem:', '    rootdirectory: /var/lib/registry', '  s3:', '    bucket: regbucket', '    region: eu-west-1']);
  const both = loadDistributionConfig({ file, via: '--config' }, {});
  assert.equal(both.errors.length, 1);
  assert.match(both.errors[0]!, /^storage: must provide exactly one storage type/);
  assert.match(both.errors[0]!, new RegExp(`filesystem \\(storage.filesystem in ${file}\\), s3 \\(storage.s3 in ${file}\\)`));
  assert.equal(both.settings.s3, undefined);
  assert.equal(both.settings.storage, undefined);
  const fs = await configFile(t, ['storage:', '  filesystem:', '    rootdirectory: /var/lib/registry']);
  const added = loadDistributionConfig({ file: fs, via: '--config' }, { REGISTRY_STORAGE_S3_BUCKET: 'b-1', REGISTRY_STORAGE_S3_REGION: 'eu-west-1' });
  assert.deepEqual(keysOf(added.errors), ['storage']);
  assert.match(added.errors[0]!, /s3 \(REGISTRY_STORAGE_S3_BUCKET, REGISTRY_STORAGE_S3_REGION\)\. REGISTRY_STORAGE=<driver> replaces/);
});

test('every parameter of the s3 driver (2.8 and 3.x) has a verdict of its own', () => {
  const params = [
    'accesskey', 'secretkey', 'region', 'regionendpoint', 'forcepathstyle', 'bucket', 'encrypt', 'keyid', 'secure', 'skipverify', 'v4auth', 'chunksize',
    'multipartcopychunksize', 'multipartcopymaxconcurrency', 'multipartcopythresholdsize', 'rootdirectory', 'storageclass', 'useragent', 'usedualstack',
    'accelerate', 'usefipsendpoint', 'objectacl', 'loglevel', 'sessiontoken', 'redirectendpoint',
  ];
  const keys = new Set(KEY_POLICY.map((r) => r.key));
  for (const driver of ['s3', 's3aws']) for (const p of params) assert.ok(keys.has(`storage.${driver}.${p}`), `storage.${driver}.${p}`);
});
