// Which way main reloads dockerd: systemd's unit when systemd runs docker, unless the pid file
// it was given names another running dockerd (one daemon per runner on a systemd host); SIGHUP
// by pid file otherwise; and never a signal to whatever process a stale pid file names.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { chooseReload, dockerdPid } from '../../src/action/docker-daemon.js';
import { tempDir } from '../helpers/proc.js';

const PID_FILE = '/var/run/docker.pid';

test('systemd runs docker and the pid file is its daemon: systemctl reload', () => {
  assert.deepEqual(chooseReload({ systemdDocker: true, systemdMainPid: 42, pidFileExists: true, pidFileDockerd: 42 }, PID_FILE, true), { kind: 'systemd', sudo: true });
  assert.deepEqual(chooseReload({ systemdDocker: true, systemdMainPid: 42, pidFileExists: false }, PID_FILE, false), { kind: 'systemd', sudo: false });
});

test('systemd runs docker but the pid file names another running dockerd: SIGHUP by pid file', () => {
  assert.deepEqual(chooseReload({ systemdDocker: true, systemdMainPid: 42, pidFileExists: true, pidFileDockerd: 4242 }, '/srv/runner/docker.pid', true), {
    kind: 'pid',
    pidFile: '/srv/runner/docker.pid',
    sudo: true,
  });
});

test('systemd runs docker and the pid file is stale (no running dockerd): systemctl reload', () => {
  assert.deepEqual(chooseReload({ systemdDocker: true, systemdMainPid: 42, pidFileExists: true }, PID_FILE, false), { kind: 'systemd', sudo: false });
});

test('no systemd: SIGHUP by pid file when there is one, else no way to reload', () => {
  assert.deepEqual(chooseReload({ systemdDocker: false, pidFileExists: true, pidFileDockerd: 7 }, PID_FILE, false), { kind: 'pid', pidFile: PID_FILE, sudo: false });
  assert.equal(chooseReload({ systemdDocker: false, pidFileExists: false }, PID_FILE, false), undefined);
});

test('dockerdPid: only a pid file naming a running dockerd counts', async (t) => {
  const dir = await tempDir('rc-action-', t);
  const file = join(dir.path, 'docker.pid');
  assert.equal(await dockerdPid(file), undefined, 'no file');
  await writeFile(file, 'garbage\n');
  assert.equal(await dockerdPid(file), undefined, 'no pid in it');
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => sleeper.kill('SIGKILL'));
  await writeFile(file, `${sleeper.pid}\n`);
  assert.equal(await dockerdPid(file), undefined, 'a running process that is not dockerd');
});
