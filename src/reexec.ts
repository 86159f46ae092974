// Imported first by the CLI, so that `regcache serve` started without the server's node flags
// runs with them before the rest of the bundle is evaluated (see server/node-flags.ts): the
// top-level await holds the bundle here while a Node 20 server runs as a child.
import { reexecWithServerFlags } from './server/node-flags.js';

await reexecWithServerFlags();
