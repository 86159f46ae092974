// Statistics: what other folders import from src/stats.
export { Stats, ORIGINS, noBytes, type StatsSnapshot, type RepositoryStats, type UpstreamStats, type PushStats, type RegistryPullStats, type Source, type Origin, type ByOrigin } from './stats.js';
export { toPrometheus } from './prometheus.js';
export { parseRateLimit, formatWindow, type RateLimit } from './rate-limit.js';
export { countPushes } from './push-counter.js';
