// Imported first by the CLI, so that `regcache serve` started without the server's node flags
// restarts with them before the rest of the bundle is evaluated (see server/node-flags.ts).
import { reexecWithServerFlags } from './server/node-flags.js';

reexecWithServerFlags();
