# regcache as a long-lived service, the way `registry:2` runs:
#   docker build -t regcache .
#   docker run -d -p 5000:5000 -p 5001:5001 -v registry-data:/var/lib/registry regcache
# The registry listens on port 5000 and the pull-through cache (of Docker Hub unless told
# otherwise) on port 5001, on every interface; both store in the volume /var/lib/registry.
# distribution's configuration applies as in registry:2 (REGISTRY_* variables, a config.yml
# mounted at /etc/docker/registry/config.yml or /etc/distribution/config.yml). Arguments after
# the image replace `serve` (e.g. `serve --registry-addr 127.0.0.1:5000`, or `gc`); `docker exec
# <container> regcache ...` runs the CLI beside the server.
#
# The image runs the committed bundle dist/cli.js (npm run build): it needs no node_modules.
# The build pulls nothing but its base and has no architecture-specific step; any image with
# node at /usr/local/bin/node, a shell, and a user `node` (uid 1000) as the official Node images
# have works as BASE (the tests build on one assembled locally: test/helpers/node-base.ts).
ARG BASE=node:24-bookworm-slim
FROM ${BASE}

# package.json ("type": "module") and the two bundles only: see .dockerignore.
COPY . /opt/regcache/

# The volume's mount point belongs to the user the server runs as, so that a new named volume
# (which docker initializes from it) is writable. A volume a root process wrote (registry:2's)
# is refused at start with the path and the chown that fixes it.
RUN mkdir -p /var/lib/registry \
 && chown 1000:1000 /var/lib/registry \
 && ln -s /opt/regcache/dist/cli.js /usr/local/bin/regcache

# As registry:2 and registry:3: distribution's config.yml at either image's path when one is
# mounted there, else the REGISTRY_* variables alone (http.addr :5000 on every interface, the
# cache on the same host's port 5001, storage in the volume). Flags after the image win.
ENV REGCACHE_CONFIG=/etc/docker/registry/config.yml:/etc/distribution/config.yml \
    REGCACHE_STORAGE=/var/lib/registry \
    REGCACHE_READY_FILE=/tmp/regcache-ready.json

VOLUME /var/lib/registry
EXPOSE 5000 5001
# The node user of the official images, by number (Kubernetes' runAsNonRoot can check it).
USER 1000:1000

# GET /v2/ on each address the server wrote in its ready file (200, or 401 with htpasswd; http or
# https), so the check follows the configured address.
HEALTHCHECK --interval=15s --timeout=10s --start-period=20s --retries=3 \
  CMD ["node", "/opt/regcache/dist/healthcheck.js"]

# node is PID 1: the server handles SIGTERM (drains, exits 0). The flag is `npm start`'s
# (src/server/node-flags.ts).
ENTRYPOINT ["node", "--initial-old-space-size=64", "/opt/regcache/dist/cli.js"]
CMD ["serve"]
