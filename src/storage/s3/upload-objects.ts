// The objects of the upload sessions in a bucket, and the one place that names their keys:
//
//   <prefix>uploads/<id>/session.json   the session's state (SessionState), replaced by
//                                       compare-and-swap on its ETag
//   <prefix>uploads/<id>/data           the multipart upload of the session's whole parts, and
//                                       after completion the assembled blob
//   <prefix>uploads/<id>/tail-<token>   the bytes after the last whole part (fewer than a part),
//                                       a fresh key for every write, named by session.json
//
// A session's bytes are its parts in order, then its tail. Conditional writes: Ceph 16's
// gateway matches If-Match against the ETag without its quotes while AWS documents the quoted
// form, so a lost If-Match is tried once in the other form and the form that worked is kept
// (both tries are conditional: a session that really changed fails both).
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { storageError } from './errors.js';
import type { S3Location } from './location.js';

/** A whole part of a session's multipart upload. */
export interface SessionPart {
  partNumber: number;
  etag: string;
  size: number;
}

/** What session.json holds. */
export interface SessionState {
  repository: string;
  startedAt: number;
  /** The last change (a chunk, a part, a claim renewed). */
  updatedAt: number;
  /** Bytes received: the parts' sizes plus tailSize. */
  size: number;
  multipartUploadId?: string;
  parts: SessionPart[];
  /** The next part number no request has reserved (a request reserves one before uploading it). */
  nextPart: number;
  /** Key of the bytes after the last part (relative to the prefix), when tailSize > 0. */
  tailKey?: string;
  tailSize: number;
  /** A request (of any replica) appending or completing now, until `until` unless renewed. */
  claim?: { owner: string; until: number };
  /** Completion assembled the bytes at this key (relative to the prefix). */
  assembledKey?: string;
  /** Being removed: no request may continue it. */
  removing?: boolean;
}

/** The HTTP status of an S3 error, if it is one. */
export function s3Status(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** True for an S3 "not there" answer (NoSuchKey, NoSuchUpload, a 404). */
export function isS3NotFound(err: unknown): boolean {
  const name = (err as { name?: string } | undefined)?.name;
  return s3Status(err) === 404 || name === 'NoSuchKey' || name === 'NoSuchUpload' || name === 'NotFound';
}

/** True for a lost condition (412, or 409 for a conditional write that raced another). */
export function isS3ConditionFailed(err: unknown): boolean {
  const status = s3Status(err);
  return status === 412 || status === 409;
}

/** What {@link operationOf} reads of a command. */
interface S3Command {
  readonly input: { Key?: string; Prefix?: string };
}

/** `PutObject uploads/<id>/session.json`: a command's name and key (relative to the prefix), for errors. */
function operationOf(command: S3Command, prefix: string): string {
  const name = command.constructor.name.replace(/Command$/, '');
  const key = command.input.Key ?? command.input.Prefix ?? '';
  return `${name} ${key.startsWith(prefix) ? key.slice(prefix.length) : key}`;
}

/** The upload session objects of one bucket prefix. */
export class UploadObjects {
  /** Whether this gateway matched If-Match only without quotes (learnt from the first lost condition). */
  private unquotedIfMatch = false;

  /**
   * The location's client, its failures mapped as every other bucket call's: an unreachable or
   * failing gateway is a StorageUnavailableError (503 naming the bucket), a refusal a
   * StorageCredentialsError; a 404 or a lost condition reaches the caller as the SDK threw it.
   */
  readonly client: Pick<S3Client, 'send'>;

  constructor(readonly location: S3Location) {
    const send = location.client.send.bind(location.client) as (command: S3Command) => Promise<unknown>;
    this.client = {
      send: ((command: S3Command) =>
        send(command).catch((err: unknown) => {
          throw storageError(err, location, operationOf(command, location.prefix));
        })) as S3Client['send'],
    };
  }

  get bucket(): string {
    return this.location.bucket;
  }

  /** The full key in the bucket of a key relative to the prefix. */
  key(relative: string): string {
    return this.location.prefix + relative;
  }

  dir(id: string): string {
    return `uploads/${id}/`;
  }

  stateKey(id: string): string {
    return `uploads/${id}/session.json`;
  }

  dataKey(id: string): string {
    return `uploads/${id}/data`;
  }

  tailKey(id: string, token: string): string {
    return `uploads/${id}/tail-${token}`;
  }

  /** The session's state and its ETag, or undefined when it has none. */
  async read(id: string): Promise<{ state: SessionState; etag: string } | undefined> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(this.stateKey(id)) }));
      const text = await r.Body!.transformToString();
      return { state: JSON.parse(text) as SessionState, etag: r.ETag ?? '' };
    } catch (err) {
      if (isS3NotFound(err)) return undefined;
      throw err;
    }
  }

  /** Creates the session's state unless it exists; returns its ETag. */
  async create(id: string, state: SessionState): Promise<string> {
    const r = await this.client.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: this.key(this.stateKey(id)), Body: JSON.stringify(state), ContentType: 'application/json', IfNoneMatch: '*' }),
    );
    return r.ETag ?? '';
  }

  /**
   * Replaces the session's state if it is still at `etag`; returns the new ETag, or undefined
   * when it changed or is gone.
   */
  async replace(id: string, state: SessionState, etag: string): Promise<string | undefined> {
    const body = JSON.stringify(state);
    const put = async (unquoted: boolean): Promise<string | undefined> => {
      const ifMatch = unquoted ? etag.replace(/^"|"$/g, '') : etag.startsWith('"') ? etag : `"${etag}"`;
      try {
        const r = await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(this.stateKey(id)), Body: body, ContentType: 'application/json', IfMatch: ifMatch }));
        return r.ETag ?? '';
      } catch (err) {
        if (isS3ConditionFailed(err) || isS3NotFound(err)) return undefined;
        throw err;
      }
    };
    // The form is read once: concurrent replaces must not try the same form twice.
    const unquoted = this.unquotedIfMatch;
    const first = await put(unquoted);
    if (first !== undefined) return first;
    const second = await put(!unquoted);
    if (second !== undefined) this.unquotedIfMatch = !unquoted;
    return second;
  }

  /** Writes the session's state whatever it holds (a tombstone before removal). */
  async overwrite(id: string, state: SessionState): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(this.stateKey(id)), Body: JSON.stringify(state), ContentType: 'application/json' }));
  }

  /** Reads a whole small object (a tail) into memory. */
  async readSmall(relative: string, size: number): Promise<Buffer> {
    const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(relative) }));
    const data = Buffer.from(await r.Body!.transformToByteArray());
    if (data.length !== size) throw new Error(`${this.location.url}${relative} holds ${data.length} bytes, the session recorded ${size}`);
    return data;
  }

  /** Writes a small object whole. */
  async writeSmall(relative: string, data: Uint8Array): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(relative), Body: data, ContentLength: data.byteLength }));
  }

  /** Removes an object; not there is fine. */
  async delete(relative: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(relative) }));
  }

  /** The objects under a session's directory: relative keys and last-modified times. */
  async objects(id: string): Promise<Array<{ key: string; modifiedMs: number }>> {
    const out: Array<{ key: string; modifiedMs: number }> = [];
    let token: string | undefined;
    do {
      const r = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.key(this.dir(id)), ContinuationToken: token }));
      for (const o of r.Contents ?? []) out.push({ key: o.Key!.slice(this.location.prefix.length), modifiedMs: o.LastModified?.getTime() ?? 0 });
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** Multipart uploads in progress under `relativePrefix`: their session id, key, upload id and start. */
  async multipartUploads(relativePrefix: string): Promise<Array<{ id: string; key: string; uploadId: string; initiatedMs: number }>> {
    const out: Array<{ id: string; key: string; uploadId: string; initiatedMs: number }> = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const r = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.key(relativePrefix), KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      );
      for (const u of r.Uploads ?? []) {
        const key = u.Key!.slice(this.location.prefix.length);
        const id = /^uploads\/([^/]+)\//.exec(key)?.[1];
        if (id) out.push({ id, key, uploadId: u.UploadId!, initiatedMs: u.Initiated?.getTime() ?? 0 });
      }
      const more = r.IsTruncated === true;
      keyMarker = more ? r.NextKeyMarker : undefined;
      uploadIdMarker = more ? r.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return out;
  }

  /** Ids of every session directory (objects under uploads/<id>/). */
  async sessionDirs(): Promise<string[]> {
    const out: string[] = [];
    const base = this.key('uploads/');
    let token: string | undefined;
    do {
      const r = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, Delimiter: '/', ContinuationToken: token }));
      for (const p of r.CommonPrefixes ?? []) out.push(p.Prefix!.slice(base.length).replace(/\/$/, ''));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** Aborts a multipart upload; one already gone is fine. */
  async abort(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key(key), UploadId: uploadId }));
    } catch (err) {
      if (!isS3NotFound(err)) throw err;
    }
  }

  /**
   * Removes everything of session `id`: its state first (so that no replica continues it), then
   * its multipart uploads (aborted) and its other objects.
   */
  async removeAll(id: string): Promise<void> {
    await this.delete(this.stateKey(id));
    for (const u of await this.multipartUploads(this.dir(id))) await this.abort(u.key, u.uploadId);
    await Promise.all((await this.objects(id)).map((o) => this.delete(o.key)));
  }
}
