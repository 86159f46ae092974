// Where on S3 a storage lives: a client, a bucket and a key prefix, from `s3://bucket/prefix`
// and the endpoint/region/addressing settings. Credentials, and the endpoint and region when
// not given, come from the AWS SDK's standard chain (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL_S3 /
// AWS_ENDPOINT_URL, AWS_REGION, shared config and credentials files, instance roles).
import { S3Client } from '@aws-sdk/client-s3';
import { parseS3Url } from './url.js';

export { parseS3Url } from './url.js';

/** The settings of an S3 storage. */
export interface S3Settings {
  /** `s3://bucket` or `s3://bucket/prefix`. */
  url: string;
  /** Endpoint URL of an S3-compatible service (default: the SDK's chain, else AWS). */
  endpoint?: string;
  /** Region (default: the SDK's chain, else us-east-1). */
  region?: string;
  /** Path-style addressing (`endpoint/bucket/key`) instead of virtual-host (`bucket.endpoint/key`). */
  forcePathStyle?: boolean;
  /** Static credentials (distribution's storage.s3.accesskey/secretkey); default: the SDK's chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** An open S3 location. */
export interface S3Location {
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix, '' or ending in '/'. */
  readonly prefix: string;
  /** `s3://bucket/prefix`, for messages. */
  readonly url: string;
}

/** Opens a client for `settings` (no request is sent yet). */
export function openS3Location(settings: S3Settings): S3Location {
  const { bucket, prefix } = parseS3Url(settings.url);
  const client = new S3Client({
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    region: settings.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: settings.forcePathStyle ?? false,
    ...(settings.credentials ? { credentials: settings.credentials } : {}),
    // Checksums only where the API requires them: S3-compatible services that predate AWS's
    // default checksums (Ceph 16's gateway among them) answer streamed PUTs with 411 otherwise.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return { client, bucket, prefix, url: `s3://${bucket}/${prefix}` };
}
