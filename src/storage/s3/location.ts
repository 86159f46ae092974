// Where on S3 a storage lives: a client, a bucket and a key prefix, from `s3://bucket/prefix`
// and the endpoint/region/addressing settings. Credentials, and the endpoint and region when
// not given, come from the AWS SDK's standard chain (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL_S3 /
// AWS_ENDPOINT_URL, AWS_REGION, shared config and credentials files, instance roles).
import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { StorageBucketMissingError } from '../errors.js';
import { isNotFound, storageError } from './errors.js';
import { parseS3Url } from './url.js';

export { parseS3Url } from './url.js';

// The SDK warns once, on Node 20, that its releases after January 2027 will need Node 22: this
// build bundles one fixed release (package-lock.json), so the warning is about a version it never
// loads and would only puzzle the log. Set before the first client is made.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

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
  /**
   * How long to wait for the service: a connection (default 3 s), and a socket with no bytes
   * either way once connected (default 60 s: a gateway that hangs, or a reader of a blob that
   * stopped reading that long).
   */
  timeouts?: { connectMs?: number; idleMs?: number };
  /** Attempts per request, the first included (default 3: a refused connection fails within a second). */
  maxAttempts?: number;
}

/** Default connection timeout: a gateway that does not accept within this is unavailable. */
export const DEFAULT_S3_CONNECT_TIMEOUT_MS = 3000;
/** Default idle timeout of a connected socket. */
export const DEFAULT_S3_IDLE_TIMEOUT_MS = 60_000;

/** An open S3 location. */
export interface S3Location {
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix, '' or ending in '/'. */
  readonly prefix: string;
  /** `s3://bucket/prefix`, for messages. */
  readonly url: string;
}

/**
 * The SDK's logger. Its warnings go to the console, except the one it prints for every failed
 * request with a streamed body ("non-retryable streaming request": a blob upload that loses a
 * race gets 412, an expected outcome). Its error lines (one per failed request, 404s included)
 * are dropped: every failure reaches the caller as an exception, mapped by errors.ts.
 */
const sdkLogger = {
  debug: () => {},
  info: () => {},
  warn: (...args: unknown[]) => {
    if (!(typeof args[0] === 'string' && args[0].includes('non-retryable streaming request'))) console.warn(...args);
  },
  error: () => {},
};

/** Opens a client for `settings` (no request is sent yet). */
export function openS3Location(settings: S3Settings): S3Location {
  const { bucket, prefix } = parseS3Url(settings.url);
  const client = new S3Client({
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    region: settings.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: settings.forcePathStyle ?? false,
    ...(settings.credentials ? { credentials: settings.credentials } : {}),
    // Without these the SDK waits for a connection and for a hung service forever; with them a
    // stopped gateway is a StorageUnavailableError within a second or so (three attempts).
    maxAttempts: settings.maxAttempts ?? 3,
    logger: sdkLogger,
    requestHandler: {
      connectionTimeout: settings.timeouts?.connectMs ?? DEFAULT_S3_CONNECT_TIMEOUT_MS,
      socketTimeout: settings.timeouts?.idleMs ?? DEFAULT_S3_IDLE_TIMEOUT_MS,
    },
    // Checksums only where the API requires them: S3-compatible services that predate AWS's
    // default checksums (Ceph 16's gateway among them) answer streamed PUTs with 411 otherwise.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return { client, bucket, prefix, url: `s3://${bucket}/${prefix}` };
}

/**
 * Checks that the bucket answers to these credentials (HeadBucket), for a server that opens the
 * storage: throws StorageBucketMissingError, StorageCredentialsError or StorageUnavailableError.
 * (Elsewhere a HEAD of a key in a missing bucket is indistinguishable from a missing key.)
 */
export async function probeS3Location(location: S3Location): Promise<void> {
  try {
    await location.client.send(new HeadBucketCommand({ Bucket: location.bucket }));
  } catch (err) {
    if (isNotFound(err)) throw new StorageBucketMissingError(location.url, 'HeadBucket', location.bucket, { cause: err });
    throw storageError(err, location, 'HeadBucket');
  }
}
