// A lock file around a read-modify-write of a shared configuration file, so that several
// runners on one host do not lose each other's changes to daemon.json.
import { open, unlink, stat } from 'node:fs/promises';

/** Runs `fn` holding `<path>` as an exclusive lock file; a lock older than `staleMs` is broken. */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, timeoutMs = 30_000, staleMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (age > staleMs) await unlink(path).catch(() => {});
      else if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${path}`);
      else await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(path).catch(() => {});
  }
}
