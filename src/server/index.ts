// The server process: what the CLI and the Action import from src/server.
export { startServer, ListenError, type ServerOptions, type RunningServer } from './server.js';
export { runServer, type RunOptions } from './run.js';
export { parseAddress, urlOf } from './address.js';
