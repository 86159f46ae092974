// Reads the TLS certificate and key the server is given, and says what is wrong with them in
// one line naming the flag (or configuration key) and the fix, before node's TLS layer would
// answer with `PEM routines::no start line` or `key values mismatch`.
import { readFile } from 'node:fs/promises';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';

/** A file and the name its messages give it (`--tls-cert`, `http.tls.certificate in FILE`). */
export interface NamedFile {
  path: string;
  name: string;
}

const CERT_PEM = /-----BEGIN CERTIFICATE-----/;
const KEY_PEM = /-----BEGIN (?:(?:RSA|EC|DSA|ENCRYPTED) )?PRIVATE KEY-----/;

async function readNamed(file: NamedFile): Promise<Buffer> {
  try {
    return await readFile(file.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, not a PEM file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new Error(`${file.name} ${file.path}: ${why}`);
  }
}

/** Loads and checks a certificate (PEM, the server's first) and its private key. */
export async function loadTlsFiles(cert: NamedFile, key: NamedFile): Promise<{ cert: Buffer; key: Buffer }> {
  const [certPem, keyPem] = await Promise.all([readNamed(cert), readNamed(key)]);
  const certText = certPem.toString('latin1');
  const keyText = keyPem.toString('latin1');
  if (!CERT_PEM.test(certText) && CERT_PEM.test(keyText) && KEY_PEM.test(certText)) {
    throw new Error(`${cert.name} and ${key.name} are swapped: ${cert.path} holds a private key and ${key.path} a certificate`);
  }
  if (!CERT_PEM.test(certText)) {
    throw new Error(`${cert.name} ${cert.path}: no PEM certificate (-----BEGIN CERTIFICATE-----)${KEY_PEM.test(certText) ? ': it holds a private key; give it to ' + key.name : ''}`);
  }
  if (!KEY_PEM.test(keyText)) {
    throw new Error(`${key.name} ${key.path}: no PEM private key (-----BEGIN PRIVATE KEY-----)${CERT_PEM.test(keyText) ? ': it holds a certificate; give the private key of ' + cert.name : ''}`);
  }
  if (/ENCRYPTED/.test(keyText)) throw new Error(`${key.name} ${key.path}: the private key is encrypted; decrypt it (openssl pkey -in KEY -out KEY.plain)`);
  let x509: X509Certificate;
  let privateKey: KeyObject;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw new Error(`${cert.name} ${cert.path}: not a readable certificate (${(err as Error).message})`);
  }
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (err) {
    throw new Error(`${key.name} ${key.path}: not a readable private key (${(err as Error).message})`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new Error(`${key.name} ${key.path} is not the private key of the certificate in ${cert.name} ${cert.path} (${x509.subject.replace(/\n/g, ', ')}); give the key it was issued for`);
  }
  return { cert: certPem, key: keyPem };
}
