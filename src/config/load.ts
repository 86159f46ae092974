// Loads a distribution configuration as distribution does: the YAML file (version 0.1), then
// the REGISTRY_* variables over it, then what regcache makes of it (settings.ts). Also finds
// the file the container image reads when no --config is given (REGCACHE_CONFIG).
import { readFileSync, statSync } from 'node:fs';
import { isMap, isScalar, type Node } from 'yaml';
import { DISTRIBUTION_SCHEMA } from './distribution-schema.js';
import { applyEnvironment, registryVariables } from './environment.js';
import { reviewKeys, toSettings, type DistributionSettings, type Finding } from './settings.js';
import { ConfigError, parseYaml, readValue, type Tree } from './yaml-values.js';

/** A loaded configuration: the settings, and what regcache has to say about the rest. */
export interface LoadedConfig {
  /** The file read, if any (the image may run on REGISTRY_* variables alone). */
  file?: string;
  settings: DistributionSettings;
  /** Keys refused: the server must not start. */
  errors: string[];
  /** Keys and variables ignored. */
  warnings: string[];
}

/** Where a configuration comes from: a file, or (in the image, when no file exists) nothing but the variables. */
export interface ConfigSource {
  file?: string;
  /** What to call the file's flag or variable in a message about it. */
  via: string;
}

/**
 * The configuration `serve` reads: `--config FILE`; else, where REGCACHE_CONFIG lists candidate
 * files (colon-separated; the image lists registry:2's and registry:3's paths), the first that
 * exists, or none but the REGISTRY_* variables; else undefined (no distribution configuration).
 */
export function findConfig(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): ConfigSource | undefined {
  if (flag !== undefined) return { file: flag, via: '--config' };
  const list = env.REGCACHE_CONFIG;
  if (list === undefined || list === '') return undefined;
  for (const candidate of list.split(':').filter(Boolean)) {
    if (statSync(candidate, { throwIfNoEntry: false })?.isFile()) return { file: candidate, via: 'REGCACHE_CONFIG' };
  }
  return { via: 'REGCACHE_CONFIG' };
}

/** Reads the file (with a message naming the flag and the fix when it cannot). */
function readConfigFile(source: ConfigSource & { file: string }): string {
  try {
    return readFileSync(source.file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(`${source.via} ${source.file}: no such file; give the path of a distribution config.yml`);
    if (code === 'EISDIR') throw new ConfigError(`${source.via} ${source.file}: is a directory; give the path of the config.yml inside it`);
    if (code === 'EACCES') throw new ConfigError(`${source.via} ${source.file}: permission denied; make it readable by this user`);
    throw new ConfigError(`${source.via} ${source.file}: ${(err as Error).message}`);
  }
}

/** Checks `version: 0.1` as distribution does before anything else. */
function checkVersion(root: Node | null, where: string): void {
  const pair = isMap(root) ? root.items.find((p) => isScalar(p.key) && p.key.value === 'version') : undefined;
  const version = pair && isScalar(pair.value) ? String(pair.value.source ?? pair.value.value ?? '') : '';
  if (version !== '0.1') {
    throw new ConfigError(`${where}: unsupported version: "${version}"; distribution's configuration starts with version: 0.1`);
  }
}

/** Loads a configuration and the REGISTRY_* variables of `env`. Throws ConfigError where distribution would refuse to start. */
export function loadDistributionConfig(source: ConfigSource, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const where = source.file ? `in ${source.file}` : '(REGISTRY_* variables)';
  const text = source.file ? readConfigFile({ ...source, file: source.file }) : 'version: 0.1\n';
  const root = parseYaml(text, source.file ?? 'the configuration');
  checkVersion(root, source.file ?? 'the configuration');
  const unknown: string[] = [];
  const tree = readValue(root, DISTRIBUTION_SCHEMA, { path: '', where, unknown }) as Tree;
  const applied = applyEnvironment(tree, DISTRIBUTION_SCHEMA, env);
  const name = (key: string) => {
    const exact = applied.setBy.get(key);
    if (exact) return exact;
    const parts = key.split('.');
    for (let n = parts.length - 1; n > 0; n--) {
      const variable = applied.setBy.get(parts.slice(0, n).join('.'));
      if (variable) return `${key} (${parts.slice(0, n).join('.')} set by ${variable})`;
    }
    // A key whose parameters came from variables (REGISTRY_AUTH_SILLY_REALM for auth.silly).
    const below = [...new Set([...applied.setBy].filter(([path]) => path.startsWith(`${key}.`)).map(([, v]) => v))];
    if (below.length > 0) return below.join(', ');
    return source.file ? `${key} in ${source.file}` : key;
  };
  const { settings, findings } = toSettings(tree, name);
  const all: Finding[] = [...reviewKeys(tree, name), ...findings];
  return {
    ...(source.file ? { file: source.file } : {}),
    settings,
    errors: all.filter((f) => f.level === 'error').map((f) => f.message),
    warnings: [
      ...unknown.map((key) => `${key} ${where}: unknown to distribution: ignored`),
      ...applied.warnings,
      ...all.filter((f) => f.level === 'warning').map((f) => f.message),
    ],
  };
}

/** True when `env` holds any REGISTRY_* variable. */
export function hasRegistryVariables(env: NodeJS.ProcessEnv = process.env): boolean {
  return registryVariables(env).length > 0;
}
