// Statistics: what other folders import from src/stats.
export { Stats, type StatsSnapshot, type RepositoryStats, type UpstreamStats, type Source } from './stats.js';
export { toPrometheus } from './prometheus.js';
