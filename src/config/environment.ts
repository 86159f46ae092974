// REGISTRY_* environment variables over a configuration tree, as distribution's parser applies
// them (configuration/parser.go): the variables sorted by name, so that a less specific one
// (REGISTRY_AUTH) is applied before a more specific one (REGISTRY_AUTH_HTPASSWD_PATH); `_`
// separates levels; a struct field is named by its Go name upper-cased, a map key by its key
// upper-cased (a key the variable creates is lower-cased); the value is read as YAML 1.1 into
// the field's type (a quoted value loses its quotes, `yes` is true); a variable naming no field
// is ignored with a warning naming it.
import { envName, type ConfigType } from './distribution-schema.js';
import { ConfigError, parseYaml, readValue, type Tree } from './yaml-values.js';

/** The prefix distribution's variables carry. */
export const ENV_PREFIX = 'REGISTRY_';

/** What applying the variables did. */
export interface EnvResult {
  /** Warnings, one per variable ignored. */
  warnings: string[];
  /** The variable that last set each dotted path (a variable setting a subtree names its root). */
  setBy: Map<string, string>;
}

const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The REGISTRY_* variables of `env`, in the order distribution applies them (bytewise by name). */
export function registryVariables(env: NodeJS.ProcessEnv): Array<[string, string]> {
  return Object.entries(env)
    .filter((e): e is [string, string] => e[0].startsWith(ENV_PREFIX) && typeof e[1] === 'string')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Applies the REGISTRY_* variables of `env` to `tree` (in place); throws ConfigError as distribution would fail. */
export function applyEnvironment(tree: Tree, schema: ConfigType, env: NodeJS.ProcessEnv): EnvResult {
  const result: EnvResult = { warnings: [], setBy: new Map() };
  for (const [name, value] of registryVariables(env)) {
    const path = name.split('_').slice(1);
    new Overwrite(name, value, result).into(tree, schema, path, []);
  }
  return result;
}

/** One variable's walk down the tree. */
class Overwrite {
  constructor(
    private readonly name: string,
    private readonly payload: string,
    private readonly result: EnvResult,
  ) {}

  /** Sets `path` (variable segments) below `holder`, whose value has type `type`. */
  into(holder: Tree, type: ConfigType, path: string[], keys: string[]): void {
    const [segment, ...rest] = path as [string, ...string[]];
    switch (type.kind) {
      case 'struct':
        return this.struct(holder, type, segment, rest, keys);
      case 'map':
        return this.map(holder, type.of, segment, rest, keys);
      case 'typed':
        return this.map(holder, { kind: 'map', of: { kind: 'any' } }, segment, rest, keys);
      case 'any':
        return this.map(holder, { kind: 'any' }, segment, rest, keys);
      default:
        return this.ignore();
    }
  }

  private struct(holder: Tree, type: Extract<ConfigType, { kind: 'struct' }>, segment: string, rest: string[], keys: string[]): void {
    const entry = Object.entries(type.fields).find(([key, field]) => envName(key, field) === segment);
    if (!entry) return this.ignore();
    const [key, field] = entry;
    if (rest.length === 0) return this.set(holder, key, field.type, [...keys, key]);
    if (field.type.kind === 'list') return this.list(holder, key, field.type.of, rest, [...keys, key]);
    if (!isTree(holder[key])) holder[key] = {};
    this.into(holder[key] as Tree, field.type, rest, [...keys, key]);
  }

  private map(holder: Tree, of: ConfigType, segment: string, rest: string[], keys: string[]): void {
    if (rest.length === 0) return this.set(holder, segment.toLowerCase(), of, [...keys, segment.toLowerCase()]);
    // An existing key (any case) is walked into; else the key is created, lower-cased.
    const existing = Object.keys(holder).find((k) => k.toUpperCase() === segment && holder[k] !== null && holder[k] !== undefined);
    const key = existing ?? segment.toLowerCase();
    if (of.kind === 'list') return this.list(holder, key, of.of, rest, [...keys, key]);
    if (existing !== undefined && !isTree(holder[key])) {
      // distribution leaves a scalar alone when a variable names a key below it.
      this.result.warnings.push(`Ignoring environment variable ${this.name}: ${[...keys, key].join('.')} is not a mapping`);
      return;
    }
    if (!isTree(holder[key])) holder[key] = {};
    this.into(holder[key] as Tree, of.kind === 'typed' ? { kind: 'map', of: { kind: 'any' } } : of, rest, [...keys, key]);
  }

  private list(holder: Tree, key: string, of: ConfigType, rest: string[], keys: string[]): void {
    const [index, ...below] = rest as [string, ...string[]];
    if (!/^\d+$/.test(index)) throw new ConfigError(`parsing environment variable ${this.name}: non-numeric index: ${index}`);
    const list = Array.isArray(holder[key]) ? (holder[key] as unknown[]) : [];
    holder[key] = list;
    const i = Number(index);
    if (i > list.length) throw new ConfigError(`parsing environment variable ${this.name}: undefined index: ${index}`);
    if (below.length === 0) {
      const value = this.read(of, [...keys, index]);
      if (i === list.length) list.push(value);
      else list[i] = value;
      this.result.setBy.set([...keys, index].join('.'), this.name);
      return;
    }
    if (i === list.length) list.push({});
    if (!isTree(list[i])) list[i] = {};
    this.into(list[i] as Tree, of, below, [...keys, index]);
  }

  private set(holder: Tree, key: string, type: ConfigType, keys: string[]): void {
    holder[key] = this.read(type, keys);
    const path = keys.join('.');
    // The variable replaces the subtree: so does the record of who set what below it.
    for (const p of [...this.result.setBy.keys()]) if (p.startsWith(`${path}.`)) this.result.setBy.delete(p);
    this.result.setBy.set(path, this.name);
  }

  private read(type: ConfigType, keys: string[]): unknown {
    const where = `(${this.name})`;
    return readValue(parseYaml(this.payload, this.name), type, { path: keys.join('.'), where, unknown: [] });
  }

  private ignore(): void {
    this.result.warnings.push(`Ignoring unrecognized environment variable ${this.name}`);
  }
}
