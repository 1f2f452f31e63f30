// Public face of src/jobs/history. History rows in PostgreSQL: the store and its group commit, the queries and their cursors, per-request loaders, retention.
// Code outside src/jobs imports this file only (npm run lint checks it).

export * from "./bulk-selections.ts";
export * from "./durable-records.ts";
export * from "./failed-job-inbox.ts";
export { GroupCommit, type GroupCommitOptions } from "./group-commit.ts";
export {
  DEFAULT_PAGE_SIZE,
  type Edge,
  type FailedJobAuditView,
  HistoryQueries,
  type HistoryQueriesOptions,
  type JobListFilter,
  jobFilterSql,
  type OperatorActionView,
  type Page,
  type PageArgs,
  SEARCH_WINDOW,
} from "./history-queries.ts";
export { type FlowRow, HistoryStore } from "./history-store.ts";
export { createJobLoaders, type JobLoaders, type JobRef, type LiveLookup, lazyJobLoaders } from "./job-loaders.ts";
export * from "./job-logs.ts";
export { JobSecretStore, type SealedSecret } from "./job-secrets.ts";
export * from "./job-stats.ts";
export { encodeJobCursor, encodeTimeIdCursor } from "./page-cursor.ts";
export { HistoryQuarantine, isDataError, type QuarantineKind } from "./quarantine.ts";
export { HistoryRetention, type HistoryRetentionOptions, retentionLockKey } from "./retention.ts";
