// Preloaded into a regcache server process (`node --import <this file> dist/cli.js serve`) by
// tests that need the server's own route list: every fastify instance created in the process
// gets an onRoute hook (through fastify's `fastify.initialization` diagnostics channel), and
// once an instance listens one line goes to stderr (the server's log file):
//   REGCACHE-ROUTES {"port":5000,"routes":[{"method":"GET","url":"/v2/"},...]}
// It observes only: it adds no route, reads no file and changes no answer.
import diagnostics from 'node:diagnostics_channel';

diagnostics.subscribe('fastify.initialization', ({ fastify }) => {
  const routes = [];
  fastify.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) routes.push({ method, url: r.url });
  });
  fastify.addHook('onListen', function () {
    const addr = this.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    process.stderr.write(`REGCACHE-ROUTES ${JSON.stringify({ port, routes })}\n`);
  });
});
