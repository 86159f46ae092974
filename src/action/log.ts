// The step log's conventions, in one place: every line regcache prints starts with `regcache:`,
// details go to core.debug (shown with step debug on), a tool's chatter sits in a group, and the
// server's own log (server.log) is shown in a group when the server died or had to be killed,
// and always with step debug on.
import * as core from '@actions/core';
import { readFile } from 'node:fs/promises';

/** The prefix of every line the Action prints. */
export const PREFIX = 'regcache:';

/** `message` with the prefix (once). */
export function prefixed(message: string): string {
  return message.startsWith(PREFIX) ? message : `${PREFIX} ${message}`;
}

/** An outcome line. */
export function info(message: string): void {
  core.info(prefixed(message));
}

/** A warning (an annotation of the run): say what was lost and what to do. */
export function warning(message: string): void {
  core.warning(prefixed(message));
}

/** A detail, shown only with step debug on. */
export function debug(message: string): void {
  core.debug(prefixed(message));
}

/** Runs `fn` inside a collapsed group of the step log titled `regcache: <title>`. */
export function group<T>(title: string, fn: () => Promise<T>): Promise<T> {
  return core.group(prefixed(title), fn);
}

/** The last `lines` lines of `file` ('' when it cannot be read). */
export async function tail(file: string, lines = 60): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Prints the tail of the server's log in a group (`why` in its title). */
export async function showServerLog(file: string | undefined, why: string, lines = 60): Promise<void> {
  if (!file) return;
  const text = await tail(file, lines);
  await group(`server log (${why}): last ${lines} lines of ${file}`, async () => {
    core.info(text || '(empty)');
  });
}
