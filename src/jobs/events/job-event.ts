import { z } from "zod";
import type { RedisClient } from "../../infra/redis.ts";
import { CANCELLED_PREFIX, JOB_STATES, type JobView, TERMINAL_STATES } from "../job-view.ts";

export const JOB_EVENT_TYPES = [
  "SNAPSHOT",
  "ADDED",
  "WAITING",
  "DELAYED",
  "ACTIVE",
  "PROGRESS",
  "COMPLETED",
  "FAILED",
  "RETRYING",
  "CANCELLED",
  "STALLED",
  "REMOVED",
  "LOG",
  "CHILD_COMPLETED",
  "CHILD_FAILED",
] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

/** One event of a job. `id` is the Redis stream id of the BullMQ event it comes from. */
export interface JobEvent {
  id: string;
  type: JobEventType;
  queue: string;
  jobId: string;
  at: Date;
  progress: unknown;
  failedReason: string | null;
  job: JobView | null;
  /** True on a SNAPSHOT sent because the events after `since` are no longer held. */
  resync?: boolean;
  /** LOG: the line the processor wrote with `job.log`. */
  log?: string | null;
  /** CHILD_COMPLETED / CHILD_FAILED (on the parent's stream): the child that finished. */
  child?: { queue: string; id: string } | null;
  /** CHILD_COMPLETED / CHILD_FAILED: the parent's children counts right after it. */
  childrenCounts?: { processed: number; pending: number; failed: number; ignored: number } | null;
}

export const TERMINAL_EVENTS: ReadonlySet<JobEventType> = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

// Pub/sub payloads cross Redis as JSON: parse them back at the boundary, dates included.
const jobViewSchema = z.object({
  id: z.string(),
  queue: z.string(),
  name: z.string(),
  data: z.unknown(),
  state: z.enum(JOB_STATES),
  progress: z.unknown(),
  attemptsMade: z.number(),
  maxAttempts: z.number(),
  priority: z.number(),
  createdAt: z.coerce.date(),
  startedAt: z.coerce.date().nullable(),
  finishedAt: z.coerce.date().nullable(),
  result: z.unknown(),
  failedReason: z.string().nullable(),
  replayOfId: z.string().nullable(),
  tenant: z.string().nullable(),
  parentQueue: z.string().nullable().default(null),
  parentId: z.string().nullable().default(null),
});
const jobEventSchema = z.object({
  id: z.string(),
  type: z.enum(JOB_EVENT_TYPES),
  queue: z.string(),
  jobId: z.string(),
  at: z.coerce.date(),
  progress: z.unknown(),
  failedReason: z.string().nullable(),
  job: jobViewSchema.nullable(),
  log: z.string().nullable().optional(),
  child: z.object({ queue: z.string(), id: z.string() }).nullable().optional(),
  childrenCounts: z.object({ processed: z.number(), pending: z.number(), failed: z.number(), ignored: z.number() }).nullable().optional(),
});

export function parseJobEvent(payload: unknown): JobEvent {
  const e = jobEventSchema.parse(payload);
  return {
    ...e,
    progress: e.progress ?? null,
    job: e.job ? { ...e.job, data: e.job.data ?? null, progress: e.job.progress ?? null, result: e.job.result ?? null } : null,
  };
}

/** Orders stream ids `<ms>-<seq>` numerically (a missing part counts as 0). Runs per event and subscriber: allocates nothing. */
export function compareEventIds(a: string, b: string): number {
  if (a === b) return 0;
  const ad = a.indexOf("-");
  const bd = b.indexOf("-");
  const aEnd = ad < 0 ? a.length : ad;
  const bEnd = bd < 0 ? b.length : bd;
  return compareDigits(a, 0, aEnd, b, 0, bEnd) || compareDigits(a, aEnd + 1, a.length, b, bEnd + 1, b.length);
}

/** Compares the decimal numbers a[as..ae) and b[bs..be) of any length: leading zeros skipped, then length, then digits. */
function compareDigits(a: string, as: number, ae: number, b: string, bs: number, be: number): number {
  if (as > ae) as = ae;
  if (bs > be) bs = be;
  while (as < ae && a.charCodeAt(as) === 48) as++;
  while (bs < be && b.charCodeAt(bs) === 48) bs++;
  if (ae - as !== be - bs) return ae - as < be - bs ? -1 : 1;
  for (; as < ae; as++, bs++) {
    const d = a.charCodeAt(as) - b.charCodeAt(bs);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

export function isValidEventId(id: string): boolean {
  return /^\d{1,20}-\d{1,20}$/.test(id);
}

/** The time of a stream id `<ms>-<seq>` (runs per relayed event: no split, no array). */
function timeOf(id: string): Date {
  const dash = id.indexOf("-");
  return new Date(Number(dash < 0 ? id : id.slice(0, dash)));
}

export type LoadJob = (queue: string, id: string) => Promise<JobView | null>;

/**
 * Turns one entry of a BullMQ events stream into our event, or null for entries we don't expose.
 * A failed attempt that will be retried shows in BullMQ's stream as `waiting` (prev: active) or
 * `delayed` after an attempt: both become RETRYING. Answers at once (no promise) when the event
 * needs no job read, as most do (a bulk enqueue's ADDED and WAITING: thousands a call); a promise
 * when it reads the job.
 */
export function translate(
  queue: string,
  id: string,
  name: string,
  args: Record<string, unknown>,
  loadJob: LoadJob,
): JobEvent | null | Promise<JobEvent | null> {
  const jobId = typeof args.jobId === "string" ? args.jobId : null;
  if (!jobId) return null;
  const base = { id, queue, jobId, at: timeOf(id), progress: null, failedReason: null, job: null };
  switch (name) {
    case "added":
      return { ...base, type: "ADDED" };
    case "active":
      return { ...base, type: "ACTIVE" };
    case "stalled":
      return { ...base, type: "STALLED" };
    case "removed":
      return { ...base, type: "REMOVED" };
    case "progress":
      return { ...base, type: "PROGRESS", progress: args.data ?? null };
    case "log":
      // Written by the worker next to each `job.log` line (see workers/job-logs.ts).
      return { ...base, type: "LOG", log: typeof args.line === "string" ? args.line : "" };
    case "waiting":
    case "delayed": {
      const type = name === "waiting" ? "WAITING" : "DELAYED";
      const fromAttempt = name === "waiting" ? args.prev === "active" : true;
      if (!fromAttempt) return { ...base, type };
      return (async (): Promise<JobEvent> => {
        const job = await loadJob(queue, jobId);
        if (job && job.attemptsMade > 0 && job.failedReason) {
          return { ...base, type: "RETRYING", failedReason: job.failedReason };
        }
        return { ...base, type };
      })();
    }
    case "completed":
      return (async (): Promise<JobEvent> => ({ ...base, type: "COMPLETED", job: await loadJob(queue, jobId) }))();
    case "child-completed":
    case "child-failed":
      // Written by the worker that finished a flow child, into its parent's stream (src/jobs/bullmq/flows.ts).
      return {
        ...base,
        type: name === "child-completed" ? "CHILD_COMPLETED" : "CHILD_FAILED",
        child: { queue: String(args.childQueue ?? ""), id: String(args.childId ?? "") },
        childrenCounts: {
          processed: Number(args.processed ?? 0),
          pending: Number(args.pending ?? 0),
          failed: Number(args.failed ?? 0),
          ignored: Number(args.ignored ?? 0),
        },
      };
    case "cancelled":
      // Written by cancelJob for a job it took out of the queue (an active one ends as `failed`).
      return (async (): Promise<JobEvent> => ({
        ...base,
        type: "CANCELLED",
        failedReason: `${CANCELLED_PREFIX}: ${String(args.reason ?? "")}`,
        job: await loadJob(queue, jobId),
      }))();
    case "failed":
      return (async (): Promise<JobEvent> => {
        // Cancelled or failed is the job's own state (decided by its cancel mark), not read from the reason.
        const failedReason = typeof args.failedReason === "string" ? args.failedReason : null;
        const job = await loadJob(queue, jobId);
        return { ...base, type: job?.state === "CANCELLED" ? "CANCELLED" : "FAILED", failedReason, job };
      })();
    default:
      return null;
  }
}

/** Reads a queue's BullMQ events stream directly: its tail, and the entries after an id. */
export class EventStream {
  private readonly redis: RedisClient;
  private readonly keyOf: (queue: string) => string;

  constructor(redis: RedisClient, keyOf: (queue: string) => string) {
    this.redis = redis;
    this.keyOf = keyOf;
  }

  /** The id of the newest entry, "0-0" when the stream is empty. */
  async tail(queue: string): Promise<string> {
    const last = await this.redis.xrevrange(this.keyOf(queue), "+", "-", "COUNT", 1);
    return last[0]?.[0] ?? "0-0";
  }

  /**
   * True when entries after `since` may have been deleted (trimmed by MAXLEN), so replaying from it
   * could skip some: something was removed from the stream, and `since` is older than the oldest
   * entry still held (or than the newest one deleted with XDEL).
   */
  async isTrimmedAfter(queue: string, since: string): Promise<boolean> {
    let info: unknown[];
    try {
      info = (await this.redis.call("XINFO", "STREAM", this.keyOf(queue))) as unknown[];
    } catch {
      return false; // no stream yet: nothing was ever written, so nothing was trimmed
    }
    const field = (name: string) => {
      const i = info.indexOf(name);
      return i >= 0 ? info[i + 1] : undefined;
    };
    const length = Number(field("length") ?? 0);
    const added = Number(field("entries-added") ?? length); // Redis < 7 does not say: assume nothing removed
    if (added <= length) return false;
    const maxDeleted = field("max-deleted-entry-id");
    if (typeof maxDeleted === "string" && compareEventIds(since, maxDeleted) < 0) return true;
    const first = field("first-entry");
    const head = Array.isArray(first) && typeof first[0] === "string" ? first[0] : String(field("last-generated-id") ?? "0-0");
    return compareEventIds(since, head) < 0;
  }

  /** Entries after `since` up to `until` (inclusive), as raw names and fields. */
  async *after(queue: string, since: string, until: string): AsyncGenerator<{ id: string; name: string; args: Record<string, unknown> }> {
    let from = `(${since}`;
    for (;;) {
      const batch = await this.redis.xrange(this.keyOf(queue), from, until, "COUNT", 500);
      for (const [id, fields] of batch) {
        const args: Record<string, unknown> = {};
        for (let i = 0; i + 1 < fields.length; i += 2) args[fields[i] as string] = fields[i + 1];
        const name = String(args.event ?? "");
        if (typeof args.data === "string" && name === "progress") {
          try {
            args.data = JSON.parse(args.data);
          } catch {
            // progress reported as a plain string: keep it as is
          }
        }
        yield { id, name, args };
      }
      const last = batch.at(-1);
      if (!last || batch.length < 500) return;
      from = `(${last[0]}`;
    }
  }
}

export { TERMINAL_STATES };
