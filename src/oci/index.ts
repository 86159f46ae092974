// The OCI vocabulary, without I/O: what other folders import from src/oci.
export * from './errors.js';
export * from './digest.js';
export * from './names.js';
export * from './media-types.js';
export * from './manifest.js';
