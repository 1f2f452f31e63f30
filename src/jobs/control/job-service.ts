import type { JobsOptions } from "bullmq";
import { z } from "zod";
import type { Logger } from "../../infra/logger.ts";
import type { QueueSet } from "../bullmq/queue-set.ts";
import { NotFoundError, ValidationError, type ValidationIssue } from "../errors.ts";
import type { HistoryStore } from "../history/history-store.ts";
import type { JobLogStore } from "../history/job-logs.ts";
import { fromBullState, type JobMeta, type JobState, type JobView, META_KEY, viewFromBull } from "../job-view.ts";
import type { JobRegistry } from "../registry.ts";

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
  /** Most inputs one `enqueueMany` call takes. */
  maxBulkEnqueue: number;
  /** Where `getLogs` reads a job's lines once Redis no longer has them. */
  logs?: JobLogStore;
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
  private readonly registry: JobRegistry;
  private readonly queues: QueueSet;
  private readonly history: HistoryStore;
  private readonly log: Logger;
  private readonly options: JobServiceOptions;

  constructor(registry: JobRegistry, queues: QueueSet, history: HistoryStore, log: Logger, options: JobServiceOptions) {
    this.registry = registry;
    this.queues = queues;
    this.history = history;
    this.log = log;
    this.options = options;
  }

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
   * Enqueues many jobs, all or nothing: every input is validated first (each issue's path starts
   * with the input's index) and nothing is enqueued if any is invalid; then one `addBulk` per queue.
   * Inputs whose `jobId` is already known return that job, as `enqueue` does.
   */
  async enqueueMany(inputs: EnqueueInput[], meta: JobMeta = {}): Promise<JobView[]> {
    if (inputs.length > this.options.maxBulkEnqueue) {
      throw ValidationError.at(["inputs"], `at most ${this.options.maxBulkEnqueue} inputs per call (got ${inputs.length})`);
    }
    const validated: { index: number; input: EnqueueInput; data: unknown; opts: JobsOptions }[] = [];
    const issues: ValidationIssue[] = [];
    for (const [index, input] of inputs.entries()) {
      try {
        validated.push({ index, input, ...this.validate(input) });
      } catch (err) {
        if (err instanceof ValidationError) issues.push(...err.issues.map((i) => ({ ...i, path: [String(index), ...i.path] })));
        else if (err instanceof NotFoundError) throw new NotFoundError(`inputs[${index}]: ${err.message}`);
        else throw err;
      }
    }
    const seen = new Set<string>();
    for (const v of validated) {
      if (!v.opts.jobId) continue;
      const key = `${v.input.queue}\u0000${v.opts.jobId}`;
      if (seen.has(key)) issues.push({ path: [String(v.index), "jobId"], message: "appears twice in this call" });
      seen.add(key);
    }
    if (issues.length > 0) throw ValidationError.of(issues);

    // Known ids answer with the stored job; everything else goes out in one addBulk per queue.
    const results: (JobView | null)[] = await Promise.all(
      validated.map((v) => (v.opts.jobId ? this.getJob(v.input.queue, v.opts.jobId) : Promise.resolve(null))),
    );
    const byQueue = new Map<string, number[]>();
    for (const [i, v] of validated.entries()) {
      if (results[i]) continue;
      byQueue.set(v.input.queue, [...(byQueue.get(v.input.queue) ?? []), i]);
    }
    const fresh: { view: JobView; delayMs: number; backoff: unknown }[] = [];
    for (const [queueName, indexes] of byQueue) {
      const queue = this.queues.get(queueName);
      if (!queue) throw new NotFoundError(`No queue named "${queueName}"`);
      const added = await queue.addBulk(
        indexes.map((i) => {
          const v = validated[i] as (typeof validated)[number];
          const payload = Object.keys(meta).length > 0 ? { ...(v.data as object), [META_KEY]: meta } : v.data;
          return { name: v.input.name, data: payload, opts: v.opts };
        }),
      );
      for (const [k, job] of added.entries()) {
        const i = indexes[k] as number;
        const v = validated[i] as (typeof validated)[number];
        const state: JobState = v.opts.delay ? "DELAYED" : v.opts.priority ? "PRIORITIZED" : "WAITING";
        // With a jobId a concurrent call may have won: read back what Redis holds.
        const view = (v.opts.jobId ? await this.getLive(queueName, v.opts.jobId) : null) ?? viewFromBull(job, state);
        results[i] = view;
        fresh.push({ view, delayMs: v.opts.delay ?? 0, backoff: typeof v.opts.backoff === "object" ? v.opts.backoff : null });
      }
    }
    try {
      await this.history.recordEnqueued(fresh);
    } catch (err) {
      this.log.warn("history write at bulk enqueue failed; the worker will create the rows", { count: fresh.length, err });
    }
    return results as JobView[];
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
    let job = await queue.getJob(id);
    if (!job) return null;
    const bullState = await job.getState();
    // The job finished between the two reads: read it again so its fields match its state.
    if ((bullState === "completed" || bullState === "failed") && !job.finishedOn) job = (await queue.getJob(id)) ?? job;
    const state = fromBullState(bullState, job);
    return state ? viewFromBull(job, state) : null;
  }

  /** Live state from Redis when the job is there, else history; null when unknown. */
  async getJob(queue: string, id: string): Promise<JobView | null> {
    return (await this.getLive(queue, id)) ?? (await this.history.get(queue, id));
  }

  /**
   * Lines the processor wrote with `job.log`, oldest first, at most `limit`: from Redis while it holds
   * them, else the ones history kept (the first 1,000 lines / 64 KiB of the job).
   */
  async getLogs(queueName: string, id: string, limit = 1000): Promise<string[]> {
    const queue = this.queues.get(queueName);
    if (!queue) return [];
    const { logs } = await queue.getJobLogs(id, 0, limit - 1, true);
    if (logs.length > 0 || !this.options.logs) return logs;
    return this.options.logs.list(queueName, id, limit);
  }

  async replays(queue: string, id: string): Promise<JobView[]> {
    return this.history.replaysOf(queue, id);
  }

  hasQueue(queue: string): boolean {
    return this.registry.hasQueue(queue);
  }
}
