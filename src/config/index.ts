// distribution's configuration (config.yml and REGISTRY_* variables) read as distribution
// reads it, and turned into `regcache serve`'s settings. Other folders import only this file.
export { findConfig, loadDistributionConfig, hasRegistryVariables, type LoadedConfig, type ConfigSource } from './load.js';
export { applyEnvironment, registryVariables, ENV_PREFIX } from './environment.js';
export { KEY_POLICY, parseGoDuration, goListenAddress, nsOfRemoteUrl, type DistributionSettings, type S3Storage, type Sourced, type Finding } from './settings.js';
export { ConfigError, parseYaml, readValue, type Tree } from './yaml-values.js';
export { DISTRIBUTION_SCHEMA, type ConfigType } from './distribution-schema.js';
