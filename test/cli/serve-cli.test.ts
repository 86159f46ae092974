// The CLI as a new user meets it: --version, --help matching the README's CLI block (every
// command and flag, defaults as written), and startup errors that name the flag (or the
// configuration key) and the fix: TLS files swapped or not matching, an htpasswd path that is a
// directory or holds no bcrypt entry (entries that are not bcrypt named one by one), an unknown
// host, a storage directory that cannot be created, a configuration key regcache refuses.
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test, type TestContext } from 'node:test';
import bcrypt from 'bcryptjs';
import { request } from 'undici';
import { tempDir } from '../storage/fixtures.js';
import { runCliToEnd, serve, withTimeout } from '../server/cli-process.js';
import { makeTestCertificates } from '../helpers/certs.js';
import { skipUnless } from '../helpers/tools.js';
import { run, tempDir as tempTree } from '../helpers/proc.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PORTS = ['--registry-addr', '127.0.0.1:0', '--cache-addr', '127.0.0.1:0', '--log-level', 'silent'];

/** Runs `serve` expecting it to fail at start; returns its standard error. */
async function startupError(t: TestContext, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await runCliToEnd(t, ['serve', ...args], env);
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at |Error:/, 'no stack trace');
  return r.stderr;
}

/** One error line: `regcache: ` then the message. */
function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n').filter((l) => !l.startsWith('regcache: warning: '));
  assert.equal(lines.length, 1, `expected one error line, got:\n${stderr}`);
  assert.match(lines[0]!, /^regcache: /);
  return lines[0]!;
}

/** The options of a `--help` text: flag → its whole description (wrapped lines joined). */
function helpOptions(help: string): Map<string, string> {
  const out = new Map<string, string>();
  let current: string | undefined;
  for (const line of help.split('\n')) {
    const m = /^ {2}(?:-\w, )?(--[\w-]+)/.exec(line);
    if (m) {
      current = m[1]!;
      out.set(current, line.trim());
    } else if (current && /^ {10,}\S/.test(line)) {
      out.set(current, `${out.get(current)} ${line.trim()}`);
    } else {
      current = undefined;
    }
  }
  out.delete('--help');
  return out;
}

/** The README's CLI block, by command (`serve`, `gc`, `--version`): the text of its lines. */
async function readmeCli(): Promise<Map<string, string>> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## The CLI'));
  const block = /```\n([\s\S]*?)```/.exec(section)![1]!;
  const out = new Map<string, string>();
  let current = '';
  for (const line of block.split('\n')) {
    const m = /^regcache (\S+)/.exec(line);
    if (m) current = m[1]!;
    out.set(current, `${out.get(current) ?? ''}${line}\n`);
  }
  return out;
}

/** A README entry of `flag`: from its line to the next line starting another flag. */
function readmeEntry(text: string, flag: string): string | undefined {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => new RegExp(`(^|[\\s,[])${flag}([\\s,\\]]|$)`).test(l));
  if (i < 0) return undefined;
  const rest = lines.slice(i + 1);
  const end = rest.findIndex((l) => /^ {2}--/.test(l) || /^regcache /.test(l));
  return [lines[i], ...rest.slice(0, end < 0 ? rest.length : end)].join(' ');
}

// One at a time: each test starts node processes, and the machine may be busy.
describe('regcache CLI', { concurrency: false }, () => {
  test('--version and -V print the version of package.json', async (t) => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await runCliToEnd(t, [flag]);
      assert.equal(r.code, 0);
      assert.equal(r.stdout.trim(), version);
    }
  });

  test("--help matches the README's CLI block: the same commands, every flag, the same defaults, durations as written", async (t) => {
    const readme = await readmeCli();
    const top = (await runCliToEnd(t, ['--help'])).stdout;
    const commands = [...top.slice(top.indexOf('Commands:')).matchAll(/^ {2}(\w+) /gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    assert.deepEqual(commands.sort(), [...readme.keys()].filter((k) => /^\w/.test(k)).sort(), 'commands in --help and in the README');
    assert.ok(readme.has('--version'), 'the README shows regcache --version');
    for (const command of commands) {
      const help = helpOptions((await runCliToEnd(t, [command, '--help'])).stdout);
      const text = readme.get(command)!;
      const documented = new Set([...text.matchAll(/--[a-z][\w-]*/g)].map((m) => m[0]));
      assert.deepEqual([...help.keys()].sort(), [...documented].sort(), `${command}: flags in --help and in the README`);
      for (const [flag, description] of help) {
        const defaults = [...description.matchAll(/\(default: ([^)]*)\)/g)].map((m) => m[1]!);
        assert.ok(defaults.length <= 1, `${command} ${flag} shows one default: ${description}`);
        const value = defaults[0]?.replace(/^"(.*)"$/, '$1');
        if (value === undefined || /\s/.test(value)) continue;
        assert.doesNotMatch(value, /^\d{4,}$/, `${command} ${flag}: a duration shown in milliseconds`);
        const entry = readmeEntry(text, flag) ?? '';
        assert.ok(entry.includes(`default ${value}`) || entry.includes(`--${flag.slice(2)} ${value}`), `${command} ${flag}: the README says default ${value}:\n${entry}`);
      }
    }
  });

  test('a distribution configuration key regcache refuses is an error naming the key; flags win over the file', async (t) => {
    const dir = await tempDir(t);
    const config = join(dir, 'config.yml');
    await writeFile(config, 'version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  gcs:\n    bucket: b\n');
    const refused = await startupError(t, ['--config', config, ...PORTS]);
    assert.match(refused, new RegExp(`^regcache: storage\\.gcs in ${config}: not supported: another storage driver`, 'm'));
    assert.match(refused, new RegExp(`^regcache: warning: log\\.fields in ${config}: ignored`, 'm'));

    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    t.after(() => busy.close());
    const port = (busy.address() as net.AddressInfo).port;
    await writeFile(config, `version: 0.1\nhttp:\n  addr: 127.0.0.1:${port}\n  debug:\n    addr: 127.0.0.1:0\n`);
    const taken = oneLine(await startupError(t, ['--config', config, '--storage', join(dir, 's'), '--log-level', 'silent']));
    assert.match(taken, new RegExp(`127\\.0\\.0\\.1:${port} is already in use; choose another with http\\.addr in ${config}`));
    const s = await serve(t, { storage: join(dir, 's'), readyFile: join(dir, 'ready.json'), extra: ['--config', config, '--no-delete'] });
    assert.notEqual(new URL(s.ready.registry).port, String(port), '--registry-addr won over http.addr');
    const res = await request(`${s.ready.registry}/v2/a/manifests/latest`, { method: 'DELETE' });
    await res.body.dump();
    assert.equal(res.statusCode, 405, '--no-delete');
    s.child.kill('SIGTERM');
    await withTimeout(s.exited, 10_000, 'exit after SIGTERM');
  });

  test('REGCACHE_CONFIG (the image): no listed file exists, so the REGISTRY_* variables alone configure serve', async (t) => {
    const dir = await tempDir(t);
    const s = await serve(t, {
      storage: join(dir, 's'),
      readyFile: join(dir, 'ready.json'),
      bare: true,
      extra: ['--log-level', 'silent'],
      env: {
        REGCACHE_CONFIG: `${join(dir, 'docker', 'config.yml')}:${join(dir, 'distribution', 'config.yml')}`,
        REGISTRY_HTTP_ADDR: '127.0.0.1:0',
        REGISTRY_HTTP_DEBUG_ADDR: '127.0.0.1:0',
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(dir, 'from-env'),
        REGISTRY_NO_SUCH_THING: 'x',
      },
    });
    assert.equal(s.ready.storage, join(dir, 'from-env'));
    assert.match(s.stderr(), /regcache: warning: Ignoring unrecognized environment variable REGISTRY_NO_SUCH_THING/);
    const res = await request(`${s.ready.registry}/v2/a/manifests/latest`, { method: 'DELETE' });
    await res.body.dump();
    assert.equal(res.statusCode, 405, "delete is off, as distribution's default");
    s.child.kill('SIGTERM');
    await withTimeout(s.exited, 10_000, 'exit after SIGTERM');
  });

  test('an htpasswd path that is a directory, or a file without bcrypt entries, is an error naming the flag and the fix', async (t) => {
    const dir = await tempDir(t);
    const asDir = join(dir, 'htpasswd.d');
    await mkdir(asDir);
    assert.match(oneLine(await startupError(t, [...PORTS, '--storage', join(dir, 's'), '--htpasswd', asDir])), new RegExp(`--htpasswd ${asDir}: is a directory; give the htpasswd file itself`));
    const md5 = join(dir, 'md5');
    await writeFile(md5, 'dave:$apr1$abcdefgh$0123456789abcdefghijkl\n');
    assert.match(oneLine(await startupError(t, [...PORTS, '--storage', join(dir, 's'), '--htpasswd', md5])), /--htpasswd .*md5: no bcrypt entry \(user "dave" has an MD5 \(apr1\) hash.*htpasswd -B FILE dave/);
    const truncated = join(dir, 'truncated');
    await writeFile(truncated, `erin:${bcrypt.hashSync('pw', 4).slice(0, 40)}\n`);
    assert.match(oneLine(await startupError(t, [...PORTS, '--storage', join(dir, 's'), '--htpasswd', truncated])), /user "erin" has a malformed or truncated bcrypt hash/);
  });

  test('htpasswd entries that are not bcrypt are named at start, one warning per user, and the server starts', async (t) => {
    const dir = await tempDir(t);
    const file = join(dir, 'htpasswd');
    await writeFile(file, [`alice:${bcrypt.hashSync('pw', 4)}`, 'bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=', 'carol:plain'].join('\n'));
    const s = await serve(t, { storage: join(dir, 's'), readyFile: join(dir, 'ready.json'), extra: ['--htpasswd', file] });
    const warnings = s.stderr().split('\n').filter((l) => l.startsWith('regcache: warning:'));
    assert.equal(warnings.length, 2, s.stderr());
    assert.match(warnings[0]!, /--htpasswd .*: user "bob" has a SHA-1 hash.*that user cannot log in/);
    assert.match(warnings[1]!, /user "carol" has not a hash \(plain text\?\)/);
    s.child.kill('SIGTERM');
    await withTimeout(s.exited, 10_000, 'exit after SIGTERM');
  });

  test('an unknown host in --registry-addr is an error naming the flag and the fix', async (t) => {
    const dir = await tempDir(t);
    const line = oneLine(await startupError(t, ['--registry-addr', 'no-such-host.invalid:0', '--cache-addr', '127.0.0.1:0', '--storage', join(dir, 's'), '--log-level', 'silent']));
    assert.match(line, /--registry-addr: cannot resolve the host "no-such-host\.invalid"; give an IP address/);
  });

  test('a storage directory below a file is an error naming --storage, the file, and the fix', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, 'file'), '');
    const line = oneLine(await startupError(t, [...PORTS, '--storage', join(dir, 'file', 'storage')]));
    assert.match(line, new RegExp(`--storage ${dir}/file/storage: ${dir}/file is a file, not a directory; give a directory`));
  });

  test('a storage directory on a read-only file system is an error naming it (not ENOENT ... mkdir)', { skip: skipUnless(['umount'], { root: true }) }, async (t) => {
    // This temp dir unmounts what is mounted below it when the test ends.
    const { path: dir } = await tempTree('regcache-ro-', t);
    const ro = join(dir, 'ro');
    await mkdir(ro);
    await run('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
    const line = oneLine(await startupError(t, [...PORTS, '--storage', join(ro, 'a', 'storage')]));
    assert.match(line, new RegExp(`--storage ${ro}/a/storage: ${ro} is on a read-only file system; give a directory on a writable one`));
  });

  test('TLS: a certificate and key swapped, or a key of another certificate, is an error naming both flags', { skip: skipUnless(['openssl']) }, async (t) => {
    const dir = await tempDir(t);
    await mkdir(join(dir, 'a'));
    await mkdir(join(dir, 'b'));
    const a = await makeTestCertificates(join(dir, 'a'), { ips: ['127.0.0.1'] });
    const b = await makeTestCertificates(join(dir, 'b'), { ips: ['127.0.0.1'] });
    const storage = ['--storage', join(dir, 's')];
    const swapped = oneLine(await startupError(t, [...PORTS, ...storage, '--tls-cert', a.key, '--tls-key', a.cert]));
    assert.match(swapped, new RegExp(`--tls-cert and --tls-key are swapped: ${a.key} holds a private key and ${a.cert} a certificate`));
    const mismatch = oneLine(await startupError(t, [...PORTS, ...storage, '--tls-cert', a.cert, '--tls-key', b.key]));
    assert.match(mismatch, new RegExp(`--tls-key ${b.key} is not the private key of the certificate in --tls-cert ${a.cert}`));
    const alone = oneLine(await startupError(t, [...PORTS, ...storage, '--tls-cert', a.cert]));
    assert.match(alone, /--tls-cert and --tls-key go together: give --tls-key too/);
    const missing = oneLine(await startupError(t, [...PORTS, ...storage, '--tls-cert', a.cert, '--tls-key', join(dir, 'nope.key')]));
    assert.match(missing, /--tls-key .*nope\.key: no such file/);
  });
});
