// The OCI distribution error vocabulary: one frozen table that owns each code's HTTP
// status and message, and the error class every layer above storage throws to answer a
// client. Only the registry's error handler turns these into the wire envelope.

/** Every error code regcache answers with, mapped to its HTTP status and default message. */
export const ERROR_CODES = Object.freeze({
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  RANGE_INVALID: { status: 416, message: 'invalid content range' },
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  UNKNOWN: { status: 500, message: 'unknown error' },
} as const);

/** One of the codes in {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** An error that answers a request with an OCI error code (and optional headers). */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message?: string, opts: { detail?: unknown; headers?: Record<string, string>; status?: number; cause?: unknown } = {}) {
    super(message ?? ERROR_CODES[code].message, { cause: opts.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.status = opts.status ?? ERROR_CODES[code].status;
    this.detail = opts.detail;
    this.headers = opts.headers ?? {};
  }

  /** The body the wire carries: `{"errors":[{code,message,detail}]}`. */
  toEnvelope(): { errors: Array<{ code: string; message: string; detail?: unknown }> } {
    const e: { code: string; message: string; detail?: unknown } = { code: this.code, message: this.message };
    if (this.detail !== undefined) e.detail = this.detail;
    return { errors: [e] };
  }
}
