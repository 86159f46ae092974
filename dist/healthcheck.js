import { createRequire as __rcCreateRequire } from 'node:module'; const require = __rcCreateRequire(import.meta.url);
var __defProp = Object.defineProperty;
var __name = (target, value) => __defProp(target, "name", { value, configurable: true });

// src/healthcheck.ts
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
var TIMEOUT_MS = 5e3;
function probe(base, timeoutMs = TIMEOUT_MS) {
  const url = new URL("/v2/", base);
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { method: "GET", rejectUnauthorized: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}
__name(probe, "probe");
function readyUrls(file) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`${file} not written yet: the server is not listening (${err.code})`);
  }
  const ready = JSON.parse(text);
  const urls = [ready.registry, ready.cache].filter((u) => typeof u === "string");
  if (urls.length === 0) throw new Error(`${file} names no address`);
  return urls;
}
__name(readyUrls, "readyUrls");
async function check(file) {
  const problems = [];
  for (const url of readyUrls(file)) {
    try {
      const status = await probe(url);
      if (status !== 200 && status !== 401) problems.push(`${url}/v2/ answered ${status}`);
    } catch (err) {
      problems.push(`${url}/v2/: ${err.message}`);
    }
  }
  return problems;
}
__name(check, "check");
async function main() {
  const file = process.argv[2] ?? process.env.REGCACHE_READY_FILE;
  if (!file) {
    process.stderr.write("healthcheck: no ready file (argument or REGCACHE_READY_FILE)\n");
    process.exit(1);
  }
  try {
    const problems = await check(file);
    if (problems.length > 0) throw new Error(problems.join("; "));
    process.stdout.write("healthy\n");
    process.exit(0);
  } catch (err) {
    process.stderr.write(`healthcheck: ${err.message}
`);
    process.exit(1);
  }
}
__name(main, "main");
await main();
