// Reads YAML 1.1 (what distribution's yaml.v2 reads) into plain values, the way yaml.v2 fills
// distribution's Go structs: a string field keeps a plain scalar's text as written (`0123`,
// `yes`, `:5000`), a quoted scalar loses its quotes, a bool field takes YAML 1.1's
// yes/no/on/off, a field typed `any` (a storage or auth parameter) takes the scalar's YAML 1.1
// value (`yes` is true, `5000` a number), and a null is the type's zero value.
import { isMap, isScalar, isSeq, parseDocument, Scalar, type Node } from 'yaml';
import type { ConfigType } from './distribution-schema.js';

/** A configuration tree: what a YAML mapping becomes. */
export type Tree = Record<string, unknown>;

/** A value that does not fit distribution's configuration. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Where values come from, for messages: a key path and the file or variable that set it. */
export interface ReadContext {
  /** Dotted path of the value being read (`http.tls.key`). */
  path: string;
  /** Names the source in messages: `in /etc/docker/registry/config.yml`, `(REGISTRY_HTTP_ADDR)`. */
  where: string;
  /** Keys distribution does not know, as dotted paths (collected, not fatal). */
  unknown: string[];
}

/** Parses YAML 1.1 text into its root node (null for an empty document); throws ConfigError. */
export function parseYaml(text: string, where: string): Node | null {
  const doc = parseDocument(text, { version: '1.1', merge: true, uniqueKeys: true, prettyErrors: false });
  const problem = doc.errors[0];
  if (problem) throw new ConfigError(`${where}: not valid YAML: ${problem.message.split('\n')[0]}`);
  return (doc.contents as Node | null) ?? null;
}

/** The zero value of a type (what an absent or null value reads as). */
export function zeroOf(type: ConfigType): unknown {
  switch (type.kind) {
    case 'struct':
    case 'map':
    case 'typed':
      return {};
    case 'list':
      return [];
    case 'string':
    case 'loglevel':
      return '';
    case 'bool':
      return false;
    case 'int':
      return 0;
    default:
      return null;
  }
}

function kindOf(node: Node | null): string {
  if (node === null || (isScalar(node) && node.value === null)) return 'null';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  return JSON.stringify((node as Scalar).value);
}

function fail(ctx: ReadContext, expected: string, node: Node | null): never {
  throw new ConfigError(`${ctx.path} ${ctx.where}: expected ${expected}, got ${kindOf(node)}`);
}

/** The text of a scalar as a Go string field gets it (a plain scalar as written). */
function scalarText(node: Scalar): string {
  if (node.value === null) return '';
  if (node.type === Scalar.PLAIN && typeof node.source === 'string') return node.source;
  return String(node.value);
}

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'];

/** Reads `node` as `type`. */
export function readValue(node: Node | null, type: ConfigType, ctx: ReadContext): unknown {
  if (node === null || (isScalar(node) && node.value === null)) return zeroOf(type);
  switch (type.kind) {
    case 'struct':
      return readStruct(node, type.fields, ctx);
    case 'map':
      if (!isMap(node)) fail(ctx, 'a mapping', node);
      return readMap(node, type.of, ctx);
    case 'typed':
      return readTyped(node, ctx);
    case 'list':
      if (!isSeq(node)) fail(ctx, 'a list', node);
      return node.items.map((item, i) => readValue(item as Node, type.of, { ...ctx, path: `${ctx.path}.${i}` }));
    case 'string':
      if (!isScalar(node)) fail(ctx, 'a string', node);
      return scalarText(node);
    case 'loglevel': {
      if (!isScalar(node)) fail(ctx, 'a log level', node);
      const level = scalarText(node).toLowerCase();
      if (!LOG_LEVELS.includes(level)) throw new ConfigError(`${ctx.path} ${ctx.where}: "${level}" is not one of ${LOG_LEVELS.join(', ')}`);
      return level;
    }
    case 'bool':
      if (!isScalar(node) || typeof node.value !== 'boolean') fail(ctx, 'true or false', node);
      return node.value;
    case 'int':
      if (!isScalar(node) || typeof node.value !== 'number' || !Number.isInteger(node.value)) fail(ctx, 'an integer', node);
      return node.value;
    case 'duration':
      if (!isScalar(node) || (typeof node.value !== 'string' && typeof node.value !== 'number')) fail(ctx, 'a duration such as 10s or 24h', node);
      return node.value;
    default:
      return node.toJSON();
  }
}

function entries(node: Node, ctx: ReadContext): Array<[string, Node | null]> {
  if (!isMap(node)) fail(ctx, 'a mapping', node);
  return node.items.map((pair) => {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    return [key, (pair.value as Node | null) ?? null];
  });
}

function readStruct(node: Node, fields: Readonly<Record<string, { type: ConfigType }>>, ctx: ReadContext): Tree {
  const out: Tree = {};
  for (const [key, value] of entries(node, ctx)) {
    const path = ctx.path ? `${ctx.path}.${key}` : key;
    const field = Object.hasOwn(fields, key) ? fields[key] : undefined;
    if (!field) {
      // yaml.v2 ignores keys its struct has no field for: so does regcache, and says so.
      ctx.unknown.push(path);
      continue;
    }
    out[key] = readValue(value, field.type, { ...ctx, path });
  }
  return out;
}

function readMap(node: Node, of: ConfigType, ctx: ReadContext): Tree {
  const out: Tree = {};
  for (const [key, value] of entries(node, ctx)) out[key] = readValue(value, of, { ...ctx, path: `${ctx.path}.${key}` });
  return out;
}

/** distribution's Storage and Auth: `{type: {params}}`, or a bare string naming the type. */
function readTyped(node: Node, ctx: ReadContext): Tree {
  if (isScalar(node)) return { [scalarText(node)]: {} };
  const out: Tree = {};
  for (const [key, value] of entries(node, ctx)) {
    const path = `${ctx.path}.${key}`;
    if (value !== null && !isMap(value) && !(isScalar(value) && value.value === null)) fail({ ...ctx, path }, 'a mapping of parameters', value);
    out[key] = readValue(value, { kind: 'map', of: { kind: 'any' } }, { ...ctx, path });
  }
  return out;
}
