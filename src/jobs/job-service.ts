import type { JobsOptions } from "bullmq";
import { z } from "zod";
import type { Logger } from "../infra/logger.ts";
import { NotFoundError, ValidationError, type ValidationIssue } from "./errors.ts";
import type { HistoryStore } from "./history.ts";
import { fromBullState, type JobMeta, type JobState, type JobView, META_KEY, viewFromBull } from "./job-view.ts";
import type { QueueSet } from "./queues.ts";
import type { JobRegistry } from "./registry.ts";

/** BullMQ's priority range: 1 (highest) to 2^21. */
export const MAX_PRIORITY = 2_097_152;

export interface EnqueueInput {
  queue: string;
  name: string;
  data: unknown;
  /** 1 is highest; omit for plain FIFO. */
  priority?: number | null;
  delayMs?: number | null;
  attempts?: number | null;
  backoff?: { type: "FIXED" | "EXPONENTIAL"; delayMs: number } | null;
  /** Idempotency key: while a job with this id is known, enqueueing it again returns that job. */
  jobId?: string | null;
}

export interface JobServiceOptions {
  /** Largest accepted payload, in bytes of its JSON. */
  maxPayloadBytes: number;
}

const optionsSchema = z.object({
  priority: z.number().int().min(1).max(MAX_PRIORITY).nullish(),
  delayMs: z
    .number()
    .int()
    .min(0)
    .max(365 * 24 * 3600 * 1000)
    .nullish(),
  attempts: z.number().int().min(1).max(1000).nullish(),
  backoff: z
    .object({
      type: z.enum(["FIXED", "EXPONENTIAL"]),
      delayMs: z
        .number()
        .int()
        .min(0)
        .max(24 * 3600 * 1000),
    })
    .nullish(),
  jobId: z
    .string()
    .min(1)
    .max(256)
    .refine((v) => !v.includes(":"), "must not contain ':'")
    .refine((v) => !/^\d+$/.test(v), "must not be a plain integer (BullMQ reserves those for its own ids)")
    .nullish(),
});

function issuesOf(error: z.ZodError, prefix: string[]): ValidationIssue[] {
  return error.issues.map((i) => ({ path: [...prefix, ...i.path.map(String)], message: i.message }));
}

/**
 * Every operation on jobs: the GraphQL layer and the tooling call this, never BullMQ directly.
 * Throws the errors of errors.ts for expected failures.
 */
export class JobService {
  constructor(
    private readonly registry: JobRegistry,
    private readonly queues: QueueSet,
    private readonly history: HistoryStore,
    private readonly log: Logger,
    private readonly options: JobServiceOptions,
  ) {}

  /** Validates one input; returns the BullMQ options or throws a ValidationError / NotFoundError. */
  private validate(input: EnqueueInput): { data: unknown; opts: JobsOptions } {
    const queue = this.queues.get(input.queue);
    if (!queue) throw new NotFoundError(`No queue named "${input.queue}"`);
    const def = this.registry.get(input.queue, input.name);
    if (!def) {
      const known = this.registry
        .ofQueue(input.queue)
        .map((d) => d.name)
        .join(", ");
      throw ValidationError.at(["name"], `unknown job name "${input.name}" in queue "${input.queue}" (known: ${known})`);
    }
    const issues: ValidationIssue[] = [];
    const size = Buffer.byteLength(JSON.stringify(input.data ?? null));
    if (size > this.options.maxPayloadBytes) {
      issues.push({ path: ["data"], message: `is ${size} bytes, more than the limit of ${this.options.maxPayloadBytes}` });
    }
    const parsed = def.schema.safeParse(input.data);
    if (!parsed.success) issues.push(...issuesOf(parsed.error, ["data"]));
    const opts = optionsSchema.safeParse(input);
    if (!opts.success) issues.push(...issuesOf(opts.error, []));
    if (issues.length > 0 || !parsed.success || !opts.success) throw ValidationError.of(issues);

    const o = opts.data;
    const backoff = o.backoff ?? def.defaults.backoff;
    return {
      data: parsed.data,
      opts: {
        jobId: o.jobId ?? undefined,
        priority: o.priority ?? undefined,
        delay: o.delayMs ?? undefined,
        attempts: o.attempts ?? def.defaults.attempts ?? 1,
        backoff: backoff ? { type: backoff.type.toLowerCase() as "fixed" | "exponential", delay: backoff.delayMs } : undefined,
      },
    };
  }

  /** Enqueues one job; with a `jobId` that is already known, returns that job unchanged. */
  async enqueue(input: EnqueueInput, meta: JobMeta = {}): Promise<JobView> {
    const { data, opts } = this.validate(input);
    if (opts.jobId) {
      const existing = await this.getJob(input.queue, opts.jobId);
      if (existing) return existing;
    }
    const queue = this.queues.get(input.queue);
    if (!queue) throw new NotFoundError(`No queue named "${input.queue}"`);
    const payload = Object.keys(meta).length > 0 ? { ...(data as object), [META_KEY]: meta } : data;
    const job = await queue.add(input.name, payload, opts);
    if (opts.jobId) {
      // A concurrent enqueue with the same id may have won: BullMQ then returns our local copy, not
      // the stored job, so read back what Redis holds.
      const stored = await this.getLive(input.queue, opts.jobId);
      if (stored) {
        await this.recordEnqueued(stored, opts);
        return stored;
      }
    }
    const state: JobState = opts.delay ? "DELAYED" : opts.priority ? "PRIORITIZED" : "WAITING";
    const view = viewFromBull(job, state);
    await this.recordEnqueued(view, opts);
    return view;
  }

  /**
   * The history row from enqueue on. A failed write does not fail the enqueue (the job is already in
   * Redis and the worker's writes are upserts that create the row), so it is logged, not thrown.
   */
  private async recordEnqueued(view: JobView, opts: JobsOptions): Promise<void> {
    try {
      const backoff = typeof opts.backoff === "object" ? opts.backoff : null;
      await this.history.recordEnqueued([{ view, delayMs: opts.delay ?? 0, backoff }]);
    } catch (err) {
      this.log.warn("history write at enqueue failed; the worker will create the row", { queue: view.queue, jobId: view.id, err });
    }
  }

  /** The job as Redis holds it now, or null when Redis no longer has it. */
  async getLive(queueName: string, id: string): Promise<JobView | null> {
    const queue = this.queues.get(queueName);
    if (!queue) return null;
    const job = await queue.getJob(id);
    if (!job) return null;
    const state = fromBullState(await job.getState(), job);
    return state ? viewFromBull(job, state) : null;
  }

  /** Live state from Redis when the job is there, else history; null when unknown. */
  async getJob(queue: string, id: string): Promise<JobView | null> {
    return (await this.getLive(queue, id)) ?? (await this.history.get(queue, id));
  }

  /** Lines the processor wrote with `job.log`, oldest first, at most `limit`. */
  async getLogs(queueName: string, id: string, limit = 1000): Promise<string[]> {
    const queue = this.queues.get(queueName);
    if (!queue) return [];
    const { logs } = await queue.getJobLogs(id, 0, limit - 1, true);
    return logs;
  }

  async replays(queue: string, id: string): Promise<JobView[]> {
    return this.history.replaysOf(queue, id);
  }

  hasQueue(queue: string): boolean {
    return this.registry.hasQueue(queue);
  }
}
