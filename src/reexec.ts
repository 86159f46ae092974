// Imported first by the CLI, so that `regcache serve` started without the server's node flags
// runs with them before the rest of the bundle is evaluated (see server/node-flags.ts): the
// top-level await holds the bundle here while a Node 20 server runs as a child, and that child
// stops when the bin is gone.
import { reexecWithServerFlags, stopWithTheBin } from './server/node-flags.js';

await reexecWithServerFlags();
stopWithTheBin();
