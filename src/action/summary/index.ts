// The job summary: what other modules of the Action import.
export { renderJobSummary, rateLimitText, ORIGIN_LABEL, type SummaryInput } from './render.js';
export { summaryModel, summaryNumbers, displayName, DOCKER_HUB, type SummaryModel, type SummaryNumbers, type ImageRow } from './model.js';
export { escapeCell, code, formatBytes, count, shortDigest } from './markdown.js';
export { whyNotSaved, type JobEvent } from './persistence.js';
