import type { Job as BullJob, JobState as BullJobState } from "bullmq";

export const JOB_STATES = ["WAITING", "PRIORITIZED", "DELAYED", "ACTIVE", "WAITING_CHILDREN", "COMPLETED", "FAILED", "CANCELLED"] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

/** A job as the API shows it, whether read live from Redis or from history. */
export interface JobView {
  id: string;
  queue: string;
  name: string;
  data: unknown;
  state: JobState;
  progress: unknown;
  attemptsMade: number;
  maxAttempts: number;
  priority: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  result: unknown;
  failedReason: string | null;
  replayOfId: string | null;
  tenant: string | null;
  /** Flows: the parent's queue and id (a child of `enqueueFlow`); null for a job without a parent. */
  parentQueue: string | null;
  parentId: string | null;
}

/**
 * A job's persisted fields, listed once: each JobView field with its job_history column and the
 * GraphQL `Job` field that shows it. Adding a field to a job starts here (the compiler then insists
 * on JobView, `satisfies` below), and test/job-fields.test.ts fails naming whatever else disagrees:
 * the `job_history_write` SQL type and `job_history` columns (a migration), rowOf / viewFromRow
 * (src/jobs/history/history-store.ts), viewFromBull below, and the GraphQL type (src/graphql/types/job.ts).
 */
export const JOB_FIELDS = {
  id: { column: "id", graphql: "id" },
  queue: { column: "queue", graphql: "queue" },
  name: { column: "name", graphql: "name" },
  data: { column: "data", graphql: "data" },
  state: { column: "state", graphql: "state" },
  progress: { column: "progress", graphql: "progress" },
  attemptsMade: { column: "attempts_made", graphql: "attemptsMade" },
  maxAttempts: { column: "max_attempts", graphql: "maxAttempts" },
  priority: { column: "priority", graphql: "priority" },
  createdAt: { column: "created_at", graphql: "createdAt" },
  startedAt: { column: "started_at", graphql: "startedAt" },
  finishedAt: { column: "finished_at", graphql: "finishedAt" },
  result: { column: "result", graphql: "result" },
  failedReason: { column: "failed_reason", graphql: "failedReason" },
  replayOfId: { column: "replay_of_id", graphql: "replayOf" },
  tenant: { column: "tenant", graphql: "tenant" },
  // One GraphQL field shows both: `Job.parent`.
  parentQueue: { column: "parent_queue", graphql: "parent" },
  parentId: { column: "parent_id", graphql: "parent" },
} as const satisfies { [K in keyof JobView]-?: { column: string; graphql: string } };

/** Enqueue options job_history keeps besides the JobView fields (for replays); not part of a JobView. */
export const ENQUEUE_OPTION_FIELDS = {
  delayMs: { column: "delay_ms" },
  backoff: { column: "backoff" },
  /** Flows: what the child's final failure does to its parent (`ParentPolicy`), for replays of the tree. */
  parentPolicy: { column: "parent_policy" },
} as const;

/** Extra fields this API keeps in a BullMQ job's `data`, under one key a payload schema never sees. */
export interface JobMeta {
  replayOf?: string;
  tenant?: string;
  /** The job type's secret payload paths (JobDefinition.secret), masked in every view. */
  secret?: readonly string[];
}

/** What a secret payload value reads as everywhere but in the processor. */
export const REDACTED = "[redacted]";

/**
 * `data` with the value at each of `paths` (dot-separated object keys) replaced by REDACTED; the
 * rest shared, not copied. Paths that lead nowhere are skipped.
 */
export function redact(data: unknown, paths: readonly string[] | undefined): unknown {
  if (!paths || paths.length === 0) return data;
  let out = data;
  for (const path of paths) out = redactPath(out, path.split("."));
  return out;
}

function redactPath(value: unknown, keys: string[]): unknown {
  if (!value || typeof value !== "object" || Array.isArray(value)) return value;
  const [key, ...rest] = keys as [string, ...string[]];
  if (!Object.hasOwn(value, key)) return value;
  const obj = value as Record<string, unknown>;
  const next = rest.length === 0 ? (obj[key] === undefined || obj[key] === null ? obj[key] : REDACTED) : redactPath(obj[key], rest);
  return next === obj[key] ? value : { ...obj, [key]: next };
}
export const META_KEY = "__meta";

export function splitData(raw: unknown): { data: unknown; meta: JobMeta } {
  if (raw && typeof raw === "object" && !Array.isArray(raw) && META_KEY in raw) {
    const { [META_KEY]: meta, ...data } = raw as Record<string, unknown>;
    return { data, meta: (meta ?? {}) as JobMeta };
  }
  return { data: raw, meta: {} };
}

/** Our state of a job in BullMQ's state; `cancelled`: a failed job ended CANCELLED (`QueueSet.isCancelled` says). */
export function fromBullState(state: BullJobState | "unknown", cancelled: boolean): JobState | null {
  switch (state) {
    case "waiting":
      return "WAITING";
    case "prioritized":
      return "PRIORITIZED";
    case "delayed":
      return "DELAYED";
    case "active":
      return "ACTIVE";
    case "waiting-children":
      return "WAITING_CHILDREN";
    case "completed":
      return "COMPLETED";
    case "failed":
      return cancelled ? "CANCELLED" : "FAILED";
    default:
      return null;
  }
}

/**
 * How the failure reason of a cancelled job starts (`Cancelled: <reason>`). For people only: whether a
 * job was cancelled is decided by the mark cancelJob puts on it (src/jobs/bullmq/cancellation.ts), never by this text.
 */
export const CANCELLED_PREFIX = "Cancelled";

export function viewFromBull(job: BullJob, state: JobState): JobView {
  const { data, meta } = splitData(job.data);
  return {
    id: String(job.id),
    queue: job.queueName,
    name: job.name,
    data: redact(data, meta.secret),
    state,
    progress: job.progress ?? null,
    attemptsMade: job.attemptsMade,
    maxAttempts: job.opts.attempts ?? 1,
    priority: job.priority ?? 0,
    createdAt: new Date(job.timestamp),
    startedAt: job.processedOn ? new Date(job.processedOn) : null,
    finishedAt: job.finishedOn ? new Date(job.finishedOn) : null,
    result: job.returnvalue ?? null,
    failedReason: job.failedReason || null,
    replayOfId: meta.replayOf ?? null,
    tenant: meta.tenant ?? null,
    ...parentOf(job),
  };
}

/** BullMQ's parent reference (`{ id, queueKey: "<prefix>:<queue>" }`) as our queue and id. */
export function parentOf(job: Pick<BullJob, "parent">): { parentQueue: string | null; parentId: string | null } {
  const parent = job.parent;
  if (!parent?.id) return { parentQueue: null, parentId: null };
  // The queue key is `<prefix>:<queue>`; queue names hold no ':' (the registry refuses them) but the prefix may.
  return { parentQueue: parent.queueKey.slice(parent.queueKey.lastIndexOf(":") + 1), parentId: parent.id };
}
