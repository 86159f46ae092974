// The registry HTTP layer: what other folders import from src/registry.
export { buildRegistryApp, type RegistryAppOptions } from './app.js';
export { BasicAuth, parseHtpasswd, UNKNOWN_USER_PASSWORD } from './auth.js';
export { rewriteUrl } from './url-rewrite.js';
export { DEFAULT_CLIENT_TIMEOUTS, type ClientTimeouts } from './client-timeouts.js';
