/**
 * Every Redis key and pub/sub channel name this project reads or writes, built in one place, from a
 * `KeySpace`: the deployment's prefix (QUEUE_PREFIX, `{jobs}` by default) and its key layout
 * (REDIS_KEY_LAYOUT).
 *
 * - `per-queue` (the default): each queue has a prefix of its own whose hash tag names the queue
 *   (`{jobs}` -> `{jobs:mail}`), so on a Redis Cluster each queue's keys sit in one slot and different
 *   queues spread over the shards. Everything that belongs to one queue (BullMQ's keys, the relay's
 *   lease and position, the ledger, the quarantine, the recovery epoch, the cancel channel) is under
 *   its prefix; no command or script touches two queues' keys.
 * - `single` (the layout before issue 19): every key under QUEUE_PREFIX itself, so one hash tag puts
 *   all of them in one slot (one shard does all the work).
 *
 * The few keys of no queue (the retention and recovery leases, rate-limit buckets, the revocation
 * channel) stay under QUEUE_PREFIX in both layouts. A test's unique prefix isolates it either way.
 * The first group is BullMQ's own layout (`<queue prefix>:<queue>:...`): only src/jobs/bullmq reads it.
 */

export type KeyLayout = "per-queue" | "single";
export const KEY_LAYOUTS = ["per-queue", "single"] as const satisfies readonly KeyLayout[];

/** Where a deployment's keys live: QUEUE_PREFIX and the layout. */
export interface KeySpace {
  /** QUEUE_PREFIX: the start of every key; the keys of no queue live right under it. */
  readonly base: string;
  readonly layout: KeyLayout;
}

export function keySpace(base: string, layout: KeyLayout = "per-queue"): KeySpace {
  return { base, layout };
}

/**
 * The prefix of one queue's keys (BullMQ's `prefix` option for the queue). `single`: the base itself.
 * `per-queue`: the base's hash tag with the queue's name added (`{jobs}` -> `{jobs:mail}`,
 * `app{jobs}` -> `app{jobs:mail}`); a base without a tag gets one (`jobs` -> `jobs{mail}`). Queue
 * names are letters, digits, `_ . -` (jobs-module.ts), so they can neither close the tag nor match
 * a glob.
 */
export function queuePrefix(space: KeySpace, queue: string): string {
  if (space.layout === "single") return space.base;
  const tag = hashTagOf(space.base);
  if (!tag) return `${space.base}{${queue}}`;
  return `${space.base.slice(0, tag.close)}:${queue}${space.base.slice(tag.close)}`;
}

/** Where the first non-empty hash tag of `text` is (`{` at `open`, `}` at `close`), as Redis reads it. */
export function hashTagOf(text: string): { open: number; close: number } | null {
  const open = text.indexOf("{");
  const close = open < 0 ? -1 : text.indexOf("}", open + 1);
  return close > open + 1 ? { open, close } : null;
}

/**
 * SCAN patterns matching every key of a key space in both layouts (tests delete their keys with
 * them; the layout migration script reads the `single` ones). Glob characters in the base are escaped.
 */
export function scanPatterns(base: string): string[] {
  const literal = (s: string) => s.replace(/[*?[\]\\]/g, "\\$&");
  const tag = hashTagOf(base);
  const perQueue = tag ? `${literal(base.slice(0, tag.close))}:*${literal(base.slice(tag.close))}:*` : `${literal(base)}{*}:*`;
  return [`${literal(base)}:*`, perQueue];
}

export const keys = {
  /** BullMQ: one job's hash. */
  job: (space: KeySpace, queue: string, jobId: string) => `${queuePrefix(space, queue)}:${queue}:${jobId}`,
  /** BullMQ: a queue's events stream. */
  events: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:${queue}:events`,
  /** BullMQ: a queue's sorted set of finished jobs, scored by finish time. */
  finished: (space: KeySpace, queue: string, set: "completed" | "failed") => `${queuePrefix(space, queue)}:${queue}:${set}`,
  /** BullMQ: a queue's meta hash (exists once a queue was used; the layout check looks for it). */
  meta: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:${queue}:meta`,
  /** BullMQ: its own job-id counter, bumped by every add. */
  bullIdCounter: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:${queue}:id`,
  /** The API's job-id counter (durable enqueue reserves ids from it; see job-ids.ts). */
  idCounter: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:${queue}:seq`,

  /** Ledger records not yet confirmed in PostgreSQL (a hash; see workers/ledger.ts). */
  ledgerPending: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:${queue}:ledger:pending`,
  /** The lease of the worker reconciling a queue's ledger. */
  ledgerLease: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:${queue}:ledger:lock`,
  /** When the last successful reconcile pass of a queue started (epoch ms). */
  ledgerWatermark: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:${queue}:ledger:reconciled-at`,
  /** Rows PostgreSQL refused, per queue (a hash; see history/quarantine.ts). */
  quarantine: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:${queue}:quarantine`,
  /** The lease of the API instance relaying a queue's events. */
  relayLease: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:relay:${queue}:leader`,
  /** The id of the last event the relay published for a queue. */
  relayPosition: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:relay:${queue}:position`,
  /**
   * Written by each recovery pass per queue; gone means the queue's Redis (its shard, on a cluster)
   * lost its data. `single` keeps the one key it always had.
   */
  recoveryEpoch: (space: KeySpace, queue: string) =>
    space.layout === "single" ? `${space.base}:recovery:epoch` : `${queuePrefix(space, queue)}:${queue}:recovery:epoch`,

  /** The recovery pass' lease across API instances (one pass over every queue at a time). */
  recoveryLease: (space: KeySpace) => `${space.base}:recovery:lease`,
  /** The lease (never released: it expires) that allows one history retention sweep per interval. */
  retentionLease: (space: KeySpace) => `${space.base}:maintenance:history-retention`,
  /** The lease of the API instance running a confirmed bulk action's batches (a selection spans queues: not per queue). */
  bulkLease: (space: KeySpace, selectionId: string) => `${space.base}:bulk:${selectionId}:runner`,
};

/** Pub/sub channel names. */
export const channels = {
  /** Relayed events of one job. */
  job: (space: KeySpace, queue: string, jobId: string) => `${channels.jobPrefix(space, queue)}${jobId}`,
  /** What every job channel of a queue starts with (the relay names thousands a second: it builds this once). */
  jobPrefix: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:ev:${queue}:job:`,
  /** Relayed events of every job of a queue. */
  queue: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:ev:${queue}:all`,
  /** cancelJob's requests to the worker processes serving a queue (`single`: one channel for all queues). */
  cancel: (space: KeySpace, queue: string) => `${queuePrefix(space, queue)}:control:cancel`,
  /** Progress of one bulk action (bulkActionEvents; not per queue). */
  bulk: (space: KeySpace, selectionId: string) => `${space.base}:ev:bulk:${selectionId}`,
};
