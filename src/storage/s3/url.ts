// The syntax of an S3 storage URL, s3://bucket/prefix: no SDK needed to check it (the CLI
// checks it before anything loads the S3 client).

/** Splits `s3://bucket/prefix` into bucket and prefix ('' or ending in '/'); throws on anything else. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new Error(`${url} is not an S3 storage URL: write s3://<bucket> or s3://<bucket>/<prefix> (bucket names are 3-63 lowercase letters, digits, dots and hyphens)`);
  const rest = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket: m[1]!, prefix: rest ? `${rest}/` : '' };
}
