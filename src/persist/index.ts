// Persistence in the GitHub Actions cache: what other folders import from src/persist
// (the only importer of @actions/cache).
export { ActionsCache, type SaveOutcome, type SaveResult, type RestoreOutcome, type RestoreResult } from './actions-cache.js';
export { PackRestorer, type RestoreReport } from './pack-restore.js';
export { importIndex, exportIndex } from './index-sync.js';
export { saveNewContent, groupNewBlobs, REPOSITORY_CACHE_LIMIT, type SaveReport, type IndexOutcome } from './save.js';
export { restoreIndex, shouldSave, defaultBranchOf } from './restore-index.js';
export { emptyIndex, parseIndex, mergeIndex, type PersistIndex } from './persist-index.js';
export { packKey, indexKey, indexPrefix } from './keys.js';
export { importRegistry, RestoringRegistry, type RegistryImportReport } from './registry-restore.js';
export { pruneRegistry } from './registry-index.js';
