// Test helper: a throwaway single-node Ceph cluster (one monitor, one OSD on memstore, the RADOS
// Gateway on 127.0.0.1) as a real S3 service, started by s3-ceph.sh beside this file. Everything
// lives under one temp dir; `stop()` kills what the script started, by the PIDs it recorded;
// `stopGateway()` / `startGateway()` take the S3 endpoint down and back up alone.
// One cluster per test file (about 3 s to start, 140 MB); a bucket per test.
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { skipUnless, type ToolName } from './tools.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('./s3-ceph.sh', import.meta.url));

/** What the S3 tests need installed (Debian: ceph-mon ceph-osd radosgw ceph-common). */
export const CEPH_TOOLS: readonly ToolName[] = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph'];

/** For node:test's `skip`: false when Ceph is installed; a reason locally, a throw under CI. */
export function skipUnlessCeph(): string | false {
  return skipUnless(CEPH_TOOLS);
}

/** A running gateway. */
export interface CephS3 {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The cluster's directory (config, logs, data). */
  dir: string;
  /** Environment for a process that should use this gateway through the AWS SDK's chain. */
  env: Record<string, string>;
  /** A client of the gateway (path-style, checksums only where required). */
  client: S3Client;
  /** Creates a fresh bucket with a random name and returns its name. */
  createBucket(prefix?: string): Promise<string>;
  /** Stops only the RADOS Gateway (the S3 endpoint refuses connections; the cluster keeps its data). */
  stopGateway(): Promise<void>;
  /** Starts the gateway again on the same port and waits until it answers. */
  startGateway(): Promise<void>;
  /** Stops the daemons and removes the directory. */
  stop(): Promise<void>;
}

/** Options of {@link startCeph}. */
export interface CephOptions {
  /** Capacity of the OSD's memstore (held in RAM as it fills), GB; default the script's 4. */
  storeGb?: number;
}

/** Starts a cluster; call `stop()` in an `after` hook. */
export async function startCeph(opts: CephOptions = {}): Promise<CephS3> {
  const dir = join(await mkdtemp(join(tmpdir(), 'rc-ceph-')), 'cluster');
  const env = { ...process.env, S3CEPH_SMOKE: '0', ...(opts.storeGb !== undefined ? { S3CEPH_STORE_GB: String(opts.storeGb) } : {}) };
  const { stdout } = await run('bash', [SCRIPT, 'up', dir], { timeout: 120_000, env });
  const vars = Object.fromEntries([...stdout.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  const endpoint = vars.S3_ENDPOINT!;
  const accessKeyId = vars.AWS_ACCESS_KEY_ID!;
  const secretAccessKey = vars.AWS_SECRET_ACCESS_KEY!;
  const region = vars.AWS_REGION ?? 'us-east-1';
  const client = new S3Client({
    endpoint,
    region,
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    endpoint,
    region,
    accessKeyId,
    secretAccessKey,
    dir,
    env: { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_REGION: region, AWS_ENDPOINT_URL_S3: endpoint },
    client,
    async createBucket(prefix = 'rc') {
      const name = `${prefix}-${randomBytes(6).toString('hex')}`;
      await client.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    async stopGateway() {
      await run('bash', [SCRIPT, 'rgw-stop', dir], { timeout: 30_000 });
    },
    async startGateway() {
      await run('bash', [SCRIPT, 'rgw-start', dir], { timeout: 150_000 });
    },
    async stop() {
      client.destroy();
      await run('bash', [SCRIPT, 'down', dir], { timeout: 60_000 });
      await run('rm', ['-rf', join(dir, '..')]);
    },
  };
}
