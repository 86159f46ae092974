// Reads the output of `strace -f -y -s 65536 -e trace=%file -o FILE`: every syscall that names a
// file, with the absolute path(s) it named. Relative paths are resolved against the directory
// fd strace decoded (`-y` prints `AT_FDCWD</cwd>` and `3</dir>`), so that `unlinkat(3</x>, "y")`
// reads as /x/y. Paths are returned both as the process spelled them and normalized.
import { posix } from 'node:path';

/** One traced syscall and the paths it named. */
export interface FileCall {
  pid: number;
  syscall: string;
  /** Absolute, as passed (resolved against the dirfd or cwd when relative). */
  raw: string[];
  /** Normalized (`..` and `.` folded). */
  paths: string[];
  line: string;
}

/** Index of the path argument(s) of each syscall, and of the directory fd each is relative to. */
const PATH_ARGS: Readonly<Record<string, ReadonlyArray<readonly [path: number, dirfd: number | null]>>> = {
  open: [[0, null]],
  creat: [[0, null]],
  openat: [[1, 0]],
  openat2: [[1, 0]],
  stat: [[0, null]],
  lstat: [[0, null]],
  newfstatat: [[1, 0]],
  fstatat64: [[1, 0]],
  statx: [[1, 0]],
  access: [[0, null]],
  faccessat: [[1, 0]],
  faccessat2: [[1, 0]],
  mkdir: [[0, null]],
  mkdirat: [[1, 0]],
  rmdir: [[0, null]],
  unlink: [[0, null]],
  unlinkat: [[1, 0]],
  rename: [[0, null], [1, null]],
  renameat: [[1, 0], [3, 2]],
  renameat2: [[1, 0], [3, 2]],
  link: [[0, null], [1, null]],
  linkat: [[1, 0], [3, 2]],
  // A symlink's target is text stored in the link, not a file the call touches.
  symlink: [[1, null]],
  symlinkat: [[2, 1]],
  readlink: [[0, null]],
  readlinkat: [[1, 0]],
  chmod: [[0, null]],
  fchmodat: [[1, 0]],
  chown: [[0, null]],
  lchown: [[0, null]],
  fchownat: [[1, 0]],
  utime: [[0, null]],
  utimes: [[0, null]],
  utimensat: [[1, 0]],
  truncate: [[0, null]],
  statfs: [[0, null]],
  execve: [[0, null]],
  execveat: [[1, 0]],
  chdir: [[0, null]],
  getxattr: [[0, null]],
  lgetxattr: [[0, null]],
  setxattr: [[0, null]],
  lsetxattr: [[0, null]],
  listxattr: [[0, null]],
  llistxattr: [[0, null]],
  removexattr: [[0, null]],
  lremovexattr: [[0, null]],
  mknod: [[0, null]],
  mknodat: [[1, 0]],
  inotify_add_watch: [[1, null]],
};

/** Splits the argument list of a syscall line at top-level commas. */
function splitArgs(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  let inStr = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (inStr) {
      cur += c;
      if (c === '\\') cur += s[++i] ?? '';
      else if (c === '"') inStr = false;
      continue;
    }
    if (c === '"') inStr = true;
    else if (c === '[' || c === '{' || c === '(') depth++;
    else if (c === ']' || c === '}' || c === ')') depth--;
    else if (c === '<') depth++;
    else if (c === '>') depth--;
    if (c === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** Decodes a C string literal as strace prints it (`"..."`, possibly followed by `...`). */
function cString(arg: string): string | undefined {
  const m = /^"((?:[^"\\]|\\.)*)"(\.\.\.)?$/s.exec(arg);
  if (!m) return undefined;
  if (m[2]) throw new Error(`strace truncated a path (raise -s): ${arg.slice(0, 200)}`);
  const bytes: number[] = [];
  const s = m[1]!;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      bytes.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const n = s[++i]!;
    const simple: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, '"': 34, '\\': 92 };
    if (n in simple) bytes.push(simple[n]!);
    else if (n === 'x') {
      bytes.push(Number.parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/[0-7]/.test(n)) {
      let oct = n;
      while (oct.length < 3 && /[0-7]/.test(s[i + 1] ?? '')) oct += s[++i];
      bytes.push(Number.parseInt(oct, 8));
    } else bytes.push(n.charCodeAt(0));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The path `-y` printed for a directory fd argument (`AT_FDCWD</cwd>`, `3</dir>`). */
function fdPath(arg: string | undefined): string | undefined {
  if (!arg) return undefined;
  const m = /^(?:AT_FDCWD|-?\d+)<(.*)>$/s.exec(arg);
  return m ? m[1] : undefined;
}

/** Parses a trace; throws on a path syscall it cannot read (so nothing escapes the check unseen). */
export function parseFileTrace(text: string, cwd: string): FileCall[] {
  const calls: FileCall[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+([a-z_0-9]+)\((.*)$/s.exec(line);
    if (!m) continue; // `<... resumed>`, `+++ exited`, `--- SIGxxx`, blank
    const [, pid, syscall, rest] = m;
    // The arguments end at `) = ret` or at ` <unfinished ...>`.
    const end = rest!.includes(' <unfinished ...>') ? rest!.lastIndexOf(' <unfinished ...>') : rest!.search(/\)\s+= [^=]*$/);
    const argText = end >= 0 ? rest!.slice(0, end) : rest!;
    const args = splitArgs(argText);
    const spec = PATH_ARGS[syscall!];
    const raw: string[] = [];
    const pick = (i: number, dirfd: number | null) => {
      const arg = args[i];
      if (arg === undefined || arg === 'NULL') return;
      const p = cString(arg);
      if (p === undefined) throw new Error(`cannot read argument ${i} of ${syscall}: ${line.slice(0, 300)}`);
      if (p.startsWith('/')) raw.push(p);
      else {
        const base = dirfd === null ? cwd : fdPath(args[dirfd]);
        if (base === undefined) throw new Error(`no directory for a relative path in: ${line.slice(0, 300)}`);
        raw.push(p === '' ? base : `${base}/${p}`);
      }
    };
    if (spec) for (const [p, d] of spec) pick(p, d);
    else {
      // A syscall this table does not know: every string argument counts as a path.
      args.forEach((a, i) => {
        if (a.startsWith('"')) pick(i, null);
      });
    }
    calls.push({ pid: Number(pid), syscall: syscall!, raw, paths: raw.map((p) => posix.normalize(p)), line });
  }
  return calls;
}

/** True when `path` is `dir` or below it (both normalized, absolute). */
export function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}
