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
}

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

export function fromBullState(state: BullJobState | "unknown", job: BullJob): JobState | null {
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
      return job.failedReason?.startsWith(CANCELLED_PREFIX) ? "CANCELLED" : "FAILED";
    default:
      return null;
  }
}

/** failedReason of a job that ended because it was cancelled. */
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
  };
}
