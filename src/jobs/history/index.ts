// Public face of src/jobs/history. History rows in PostgreSQL: the store and its group commit, the queries and their cursors, per-request loaders, retention.
// Code outside src/jobs imports this file only (npm run lint checks it).

export * from "./failed-job-inbox.ts";
export * from "./group-commit.ts";
export * from "./history-queries.ts";
export * from "./history-store.ts";
export * from "./job-loaders.ts";
export * from "./job-logs.ts";
export * from "./job-stats.ts";
export * from "./page-cursor.ts";
export * from "./retention.ts";
