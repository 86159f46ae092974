// The container image's HEALTHCHECK: reads the ready file the server writes once both ports
// listen (`--ready-file`, REGCACHE_READY_FILE in the image), so it follows whatever address the
// flags, environment or configuration chose, and asks each port for `GET /v2/`. 200 and 401 (basic
// auth on) are healthy, over http or https; the certificate is not verified (the check talks to
// its own server on the loopback address, which the certificate need not name). Needs only node.
// Exit 0 healthy, 1 not (with the reason on stderr, which `docker inspect` shows).
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** How long one probe may take. */
const TIMEOUT_MS = 5_000;

/** `GET <base>/v2/` → the status code, or rejects with the reason. */
function probe(base: string, timeoutMs = TIMEOUT_MS): Promise<number> {
  const url = new URL('/v2/', base);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { method: 'GET', rejectUnauthorized: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The URLs of a ready file ({registry, cache, ...}); throws when it is missing or malformed. */
function readyUrls(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file} not written yet: the server is not listening (${(err as NodeJS.ErrnoException).code})`);
  }
  const ready = JSON.parse(text) as { registry?: unknown; cache?: unknown };
  const urls = [ready.registry, ready.cache].filter((u): u is string => typeof u === 'string');
  if (urls.length === 0) throw new Error(`${file} names no address`);
  return urls;
}

/** Probes every port of the ready file; resolves with the problems found (none: healthy). */
async function check(file: string): Promise<string[]> {
  const problems: string[] = [];
  for (const url of readyUrls(file)) {
    try {
      const status = await probe(url);
      if (status !== 200 && status !== 401) problems.push(`${url}/v2/ answered ${status}`);
    } catch (err) {
      problems.push(`${url}/v2/: ${(err as Error).message}`);
    }
  }
  return problems;
}

async function main(): Promise<void> {
  const file = process.argv[2] ?? process.env.REGCACHE_READY_FILE;
  if (!file) {
    process.stderr.write('healthcheck: no ready file (argument or REGCACHE_READY_FILE)\n');
    process.exit(1);
  }
  try {
    const problems = await check(file);
    if (problems.length > 0) throw new Error(problems.join('; '));
    process.stdout.write('healthy\n');
    process.exit(0);
  } catch (err) {
    process.stderr.write(`healthcheck: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

await main();
