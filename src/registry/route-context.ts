// What the route groups share: the store they serve and how a request's repository name
// becomes the name the store knows (the cache port maps `library/alpine?ns=docker.io` to
// `docker.io/library/alpine`; the registry port uses names as they are).
import type { FastifyRequest } from 'fastify';
import type { RegistryBackend, RegistryReader } from '../storage/index.js';
import { nameParam, query } from './http-util.js';

/** Maps a validated request name (and the query) to the store's name. */
export type NameResolver = (name: string, query: Record<string, string | undefined>) => string;

/** Shared state of the read routes. */
export interface RouteContext<B extends RegistryReader = RegistryReader> {
  backend: B;
  /** The store's name for this request's repository (validated first). */
  name(request: FastifyRequest): string;
  /** True once the app is closing (answers then end their connection). */
  closing?(): boolean;
}

/** Builds a route context; without a resolver, names pass through. */
export function routeContext<B extends RegistryReader>(backend: B, resolve?: NameResolver): RouteContext<B> {
  return {
    backend,
    name: resolve ? (request) => resolve(nameParam(request), query(request)) : nameParam,
  };
}

/** The context of the write routes. */
export type WriteContext = RouteContext<RegistryBackend>;
