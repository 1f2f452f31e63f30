/**
 * Every Redis key and pub/sub channel name this project reads or writes, built in one place. All of
 * them start with the queue prefix (QUEUE_PREFIX, `{jobs}` by default): its hash tag puts them in
 * one Redis Cluster slot with the queues they belong to, and a test's unique prefix isolates it.
 *
 * The first group is BullMQ's own layout (`<prefix>:<queue>:...`): only src/jobs/bullmq reads it.
 */
export const keys = {
  /** BullMQ: one job's hash. */
  job: (prefix: string, queue: string, jobId: string) => `${prefix}:${queue}:${jobId}`,
  /** BullMQ: a queue's events stream. */
  events: (prefix: string, queue: string) => `${prefix}:${queue}:events`,
  /** BullMQ: a queue's sorted set of finished jobs, scored by finish time. */
  finished: (prefix: string, queue: string, set: "completed" | "failed") => `${prefix}:${queue}:${set}`,

  /** Ledger records not yet confirmed in PostgreSQL (a hash; see workers/ledger.ts). */
  ledgerPending: (prefix: string, queue: string) => `${prefix}:${queue}:ledger:pending`,
  /** The lease of the worker reconciling a queue's ledger. */
  ledgerLease: (prefix: string, queue: string) => `${prefix}:${queue}:ledger:lock`,
  /** When the last successful reconcile pass of a queue started (epoch ms). */
  ledgerWatermark: (prefix: string, queue: string) => `${prefix}:${queue}:ledger:reconciled-at`,
  /** The lease of the API instance relaying a queue's events. */
  relayLease: (prefix: string, queue: string) => `${prefix}:relay:${queue}:leader`,
  /** The id of the last event the relay published for a queue. */
  relayPosition: (prefix: string, queue: string) => `${prefix}:relay:${queue}:position`,
  /** The lease (never released: it expires) that allows one history retention sweep per interval. */
  retentionLease: (prefix: string) => `${prefix}:maintenance:history-retention`,
  /** The lease of the API instance running a confirmed bulk action's batches. */
  bulkLease: (prefix: string, selectionId: string) => `${prefix}:bulk:${selectionId}:runner`,
};

/** Pub/sub channel names. */
export const channels = {
  /** Relayed events of one job. */
  job: (prefix: string, queue: string, jobId: string) => `${prefix}:ev:${queue}:job:${jobId}`,
  /** Relayed events of every job of a queue. */
  queue: (prefix: string, queue: string) => `${prefix}:ev:${queue}:all`,
  /** cancelJob's requests to every worker process. */
  cancel: (prefix: string) => `${prefix}:control:cancel`,
  /** Progress of one bulk action (bulkActionEvents). */
  bulk: (prefix: string, selectionId: string) => `${prefix}:ev:bulk:${selectionId}`,
};
