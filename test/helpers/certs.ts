// A throwaway certificate authority and a server certificate signed by it, made with the
// openssl command line, for end-to-end tests of regcache over TLS. EC P-256 keys keep it fast.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './proc.js';
import { toolPath } from './tools.js';

/** Files written by makeTestCertificates. */
export interface TestCertificates {
  /** CA certificate (PEM): what clients must trust. */
  caCert: string;
  caKey: string;
  /** Server certificate (PEM) with the requested subjectAltNames. */
  cert: string;
  key: string;
}

/**
 * Writes into `dir` a CA (ca.crt, ca.key) and a server certificate (server.crt, server.key) for
 * the given IP addresses and DNS names, valid for a day. Throws if openssl is not installed (see skipUnless).
 */
export async function makeTestCertificates(dir: string, san: { ips?: readonly string[]; dns?: readonly string[] }): Promise<TestCertificates> {
  const openssl = toolPath('openssl');
  const f = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run(openssl, ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '1', '-subj', '/CN=regcache e2e test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run(openssl, ['req', '-new', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=regcache e2e server']);
  const names = [...(san.ips ?? []).map((ip) => `IP:${ip}`), ...(san.dns ?? []).map((d) => `DNS:${d}`)];
  await writeFile(f('server.ext'), [
    `subjectAltName=${names.join(',')}`,
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    '',
  ].join('\n'));
  await run(openssl, ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('server.crt'), '-days', '1', '-sha256', '-extfile', f('server.ext')]);
  return { caCert: f('ca.crt'), caKey: f('ca.key'), cert: f('server.crt'), key: f('server.key') };
}
