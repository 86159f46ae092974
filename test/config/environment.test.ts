// REGISTRY_* variables over a configuration, as distribution's parser applies them
// (configuration/parser.go): sorted by name, `_` per level, values read as YAML 1.1, Go field
// names, unknown variables warned about by name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyEnvironment, DISTRIBUTION_SCHEMA, parseYaml, readValue, registryVariables, type Tree } from '../../src/config/index.js';

function tree(yaml: string): Tree {
  return readValue(parseYaml(yaml, 'test'), DISTRIBUTION_SCHEMA, { path: '', where: 'in test', unknown: [] }) as Tree;
}

function apply(yaml: string, env: Record<string, string>): { tree: Tree; warnings: string[]; setBy: Map<string, string> } {
  const t = tree(yaml);
  const r = applyEnvironment(t, DISTRIBUTION_SCHEMA, env);
  return { tree: t, warnings: r.warnings, setBy: r.setBy };
}

test('variables are applied in byte order of their names: REGISTRY_AUTH before REGISTRY_AUTH_HTPASSWD_PATH', () => {
  assert.deepEqual(
    registryVariables({ REGISTRY_AUTH_HTPASSWD_PATH: 'p', REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_REALM: 'r', HOME: '/root' }).map(([k]) => k),
    ['REGISTRY_AUTH', 'REGISTRY_AUTH_HTPASSWD_PATH', 'REGISTRY_AUTH_HTPASSWD_REALM'],
  );
  const { tree: t } = apply('version: 0.1\n', { REGISTRY_AUTH_HTPASSWD_PATH: '/auth/htpasswd', REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_REALM: 'Registry Realm' });
  assert.deepEqual(t.auth, { htpasswd: { path: '/auth/htpasswd', realm: 'Registry Realm' } });
});

test('a less specific variable replaces the whole section the file had (REGISTRY_AUTH=htpasswd drops the file\'s auth)', () => {
  const { tree: t } = apply('version: 0.1\nauth:\n  htpasswd:\n    realm: from-file\n    path: /file\n', { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_PATH: '/env' });
  assert.deepEqual(t.auth, { htpasswd: { path: '/env' } });
});

test('a more specific variable changes one key and keeps the rest of the file', () => {
  const { tree: t, setBy } = apply('version: 0.1\nauth:\n  htpasswd:\n    realm: from-file\n    path: /file\n', { REGISTRY_AUTH_HTPASSWD_PATH: '/env' });
  assert.deepEqual(t.auth, { htpasswd: { realm: 'from-file', path: '/env' } });
  assert.equal(setBy.get('auth.htpasswd.path'), 'REGISTRY_AUTH_HTPASSWD_PATH');
  assert.equal(setBy.has('auth.htpasswd.realm'), false);
});

test('a value is read as YAML 1.1: quotes are removed, yes is true in a parameter, a string field keeps the text', () => {
  const { tree: t } = apply('version: 0.1\n', {
    REGISTRY_AUTH_HTPASSWD_REALM: '"Registry Realm"',
    REGISTRY_STORAGE_DELETE_ENABLED: 'yes',
    REGISTRY_HTTP_ADDR: ':5000',
    REGISTRY_PROXY_USERNAME: 'yes',
    REGISTRY_PROXY_PASSWORD: "'0123'",
    REGISTRY_HTTP_HTTP2_DISABLED: 'on',
  });
  assert.deepEqual(t.auth, { htpasswd: { realm: 'Registry Realm' } });
  assert.deepEqual(t.storage, { delete: { enabled: true } });
  assert.equal((t.http as Tree).addr, ':5000');
  assert.equal((t.proxy as Tree).username, 'yes', 'a Go string field keeps a plain scalar as written');
  assert.equal((t.proxy as Tree).password, '0123');
  assert.deepEqual((t.http as Tree).http2, { disabled: true });
});

test('struct fields are named by their Go names: REGISTRY_HEALTH_FILECHECKERS sets health.file, REGISTRY_PROXY_REMOTEURL proxy.remoteurl', () => {
  const { tree: t, warnings } = apply('version: 0.1\n', {
    REGISTRY_HEALTH_FILECHECKERS: '[{file: /tmp/x, interval: 10s}]',
    REGISTRY_PROXY_REMOTEURL: 'https://registry-1.docker.io',
    REGISTRY_HEALTH_FILE: 'x',
  });
  assert.deepEqual((t.health as Tree).file, [{ file: '/tmp/x', interval: '10s' }]);
  assert.equal((t.proxy as Tree).remoteurl, 'https://registry-1.docker.io');
  assert.deepEqual(warnings, ['Ignoring unrecognized environment variable REGISTRY_HEALTH_FILE']);
});

test('an unknown variable is warned about by name and changes nothing', () => {
  const before = tree('version: 0.1\nhttp:\n  addr: :5000\n');
  const { tree: t, warnings } = apply('version: 0.1\nhttp:\n  addr: :5000\n', { REGISTRY_HTTP_ADRR: ':6000', REGISTRY_PORT_5000_TCP: 'tcp://172.17.0.2:5000', REGISTRY_http_addr: ':7000' });
  assert.deepEqual(t, before);
  assert.deepEqual(warnings, [
    'Ignoring unrecognized environment variable REGISTRY_HTTP_ADRR',
    'Ignoring unrecognized environment variable REGISTRY_PORT_5000_TCP',
    'Ignoring unrecognized environment variable REGISTRY_http_addr',
  ]);
});

test('map keys match case-insensitively and new keys are lower-cased; storage parameters nest', () => {
  const { tree: t } = apply('version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /file\n', {
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/env',
    REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED: 'false',
    REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE: '2h',
  });
  assert.deepEqual(t.storage, { filesystem: { rootdirectory: '/env' }, maintenance: { uploadpurging: { enabled: false, age: '2h' } } });
});

test('list elements are set by index, appended at the end, and a gap is an error naming the variable', () => {
  const { tree: t } = apply('version: 0.1\n', { REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME: 'a', REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL: 'http://x' });
  assert.deepEqual((t.notifications as Tree).endpoints, [{ name: 'a', url: 'http://x' }]);
  assert.throws(() => apply('version: 0.1\n', { REGISTRY_NOTIFICATIONS_ENDPOINTS_2_NAME: 'a' }), /REGISTRY_NOTIFICATIONS_ENDPOINTS_2_NAME: undefined index: 2/);
  assert.throws(() => apply('version: 0.1\n', { REGISTRY_NOTIFICATIONS_ENDPOINTS_X_NAME: 'a' }), /non-numeric index: X/);
});

test('a value of the wrong type is an error naming the variable', () => {
  assert.throws(() => apply('version: 0.1\n', { REGISTRY_HTTP_HTTP2_DISABLED: 'maybe' }), /http\.http2\.disabled \(REGISTRY_HTTP_HTTP2_DISABLED\): expected true or false/);
  assert.throws(() => apply('version: 0.1\n', { REGISTRY_LOG_LEVEL: 'verbose' }), /REGISTRY_LOG_LEVEL.*"verbose" is not one of error, warn, info, debug/);
});

test('a whole section can be given as YAML in one variable', () => {
  const { tree: t } = apply('version: 0.1\n', { REGISTRY_PROXY: '{remoteurl: "https://ghcr.io", username: u, password: p}' });
  assert.deepEqual(t.proxy, { remoteurl: 'https://ghcr.io', username: 'u', password: 'p' });
});
