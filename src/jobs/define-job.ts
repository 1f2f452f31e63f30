import type { z } from "zod";

/** Options every job of a type gets unless the enqueue overrides them. */
export interface JobDefaults {
  attempts?: number;
  backoff?: { type: "fixed" | "exponential"; delayMs: number };
  /** Jobs of this queue a worker process runs at once (per queue, the largest definition wins). */
  concurrency?: number;
  /**
   * BullMQ's rate limiter for the queue: at most `max` jobs start per `durationMs`, across every
   * worker sharing the Redis. When several definitions of a queue set one, the strictest wins;
   * `WORKER_RATE_LIMIT_<QUEUE>` overrides it.
   */
  rateLimit?: { max: number; durationMs: number };
  /**
   * The longest one attempt may run, in ms (at most 2147483647). Past it the processor's AbortSignal
   * fires and the attempt fails "timed out after N ms", retried like any failure; a processor that
   * ignores the signal is ended after CANCEL_GRACE_MS. `WORKER_TIMEOUT_MS_<QUEUE>` overrides it for
   * every job type of the queue. Unset: no limit.
   */
  timeoutMs?: number;
}

/**
 * A recurring job declared in code: workers upsert it at start (idempotent across workers) and remove
 * the ones their code no longer declares; schedulers created through the API are left alone.
 */
export interface DeclaredSchedule {
  /** Unique within the queue (the BullMQ job scheduler id); no ':'. */
  id: string;
  /** A cron pattern, optionally in `tz`; or `everyMs`: exactly one. */
  pattern?: string;
  tz?: string;
  everyMs?: number;
  /** The payload of each job, validated against the definition's schema when a worker starts. */
  data: unknown;
  /** At most this many jobs, then the scheduler stops. */
  limit?: number;
  startDate?: Date;
  endDate?: Date;
}

/**
 * A job type is data: its queue, name and payload schema. The API imports it to validate on enqueue
 * and to publish the payload's JSON Schema; the worker imports it to parse the payload again before
 * running the processor. It never imports the processor itself.
 */
export interface JobDefinition<Schema extends z.ZodType = z.ZodType> {
  queue: string;
  name: string;
  description: string;
  schema: Schema;
  defaults: JobDefaults;
  /**
   * Payload paths that are secret (`"apiToken"`, `"headers.authorization"`; a path naming an object
   * hides all of it). The processor gets the real values; every copy anyone can read (history,
   * audit rows, operator actions, `Job.data`, events, schedulers) has "[redacted]" there.
   */
  secret: readonly string[];
  /** Recurring jobs of this type, kept in place by the workers that run it. */
  schedules?: DeclaredSchedule[];
}

export type JobData<D extends JobDefinition> = z.output<D["schema"]>;

export function defineJob<Schema extends z.ZodType>(def: {
  queue: string;
  name: string;
  description: string;
  schema: Schema;
  defaults?: JobDefaults;
  secret?: readonly string[];
  schedules?: DeclaredSchedule[];
}): JobDefinition<Schema> {
  return { ...def, defaults: def.defaults ?? {}, secret: def.secret ?? [] };
}
