// The server process: what the CLI and the Action import from src/server.
export { startServer, ListenError, STATS_PATH, METRICS_PATH, type ServerOptions, type RunningServer, type NamedSetting } from './server.js';
export { runServer, type RunOptions } from './run.js';
export { parseAddress, urlOf } from './address.js';
export { SERVER_NODE_FLAGS, hasHeapFlags } from './node-flags.js';
export { startGcService, askServerToCollect, type GcRequest } from './gc-service.js';
