import { CronExpressionParser } from "cron-parser";
import { z } from "zod";
import { declaredSchedulerIds } from "../bullmq/declared-schedules.ts";
import { type JobCounts, readJobCounts } from "../bullmq/queue-gauges.ts";
import type { QueueSet } from "../bullmq/queue-set.ts";
import type { JobDefinition } from "../define-job.ts";
import { NotFoundError, ValidationError, type ValidationIssue } from "../errors.ts";
import type { JobRegistry } from "../registry.ts";
import type { OperatorActionLog } from "./operator-actions.ts";

export type { JobCounts };

export interface QueueView {
  name: string;
  paused: boolean;
  counts: JobCounts;
  /** Worker connections currently serving this queue. */
  workers: number;
  jobTypes: { name: string; payloadSchema: unknown }[];
}

export interface SchedulerView {
  id: string;
  queue: string;
  name: string;
  data: unknown;
  pattern: string | null;
  everyMs: number | null;
  tz: string | null;
  nextRunAt: Date | null;
  /** At most this many jobs; null: no limit. */
  limit: number | null;
  startDate: Date | null;
  endDate: Date | null;
  /** True when a job definition declares it (workers keep it in place); false when made through the API. */
  declaredInCode: boolean;
}

export interface UpsertSchedulerInput {
  queue: string;
  id: string;
  name: string;
  data: unknown;
  pattern?: string | null;
  everyMs?: number | null;
  tz?: string | null;
  limit?: number | null;
  startDate?: Date | null;
  endDate?: Date | null;
}

/** The JSON Schema of a job type's payload, derived from its zod schema (never written by hand). */
function payloadSchema(def: JobDefinition): unknown {
  return z.toJSONSchema(def.schema, { io: "input", unrepresentable: "any" });
}

function isValidTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * The BullMQ repeat options and parsed payload of a scheduler, for the API and for schedules declared in
 * code alike: a cron `pattern` (optionally in `tz`) or `everyMs`, exactly one; `limit`, `startDate`,
 * `endDate`; the payload validated against the job type. Throws ValidationError naming every problem.
 */
export function schedulerOptions(
  def: JobDefinition,
  input: Omit<UpsertSchedulerInput, "queue" | "name">,
): { repeat: { pattern?: string; tz?: string; every?: number; limit?: number; startDate?: Date; endDate?: Date }; data: unknown } {
  const issues: ValidationIssue[] = [];
  if (!input.id || input.id.length > 256 || input.id.includes(":")) {
    issues.push({ path: ["id"], message: "must be 1 to 256 characters, without ':'" });
  }
  const parsed = def.schema.safeParse(input.data);
  if (!parsed.success) issues.push(...parsed.error.issues.map((i) => ({ path: ["data", ...i.path.map(String)], message: i.message })));
  const hasPattern = input.pattern != null;
  const hasEvery = input.everyMs != null;
  if (hasPattern === hasEvery) {
    issues.push({ path: hasPattern ? ["everyMs"] : ["pattern"], message: "give exactly one of pattern and everyMs" });
  }
  if (hasEvery && (!Number.isInteger(input.everyMs) || (input.everyMs ?? 0) < 100)) {
    issues.push({ path: ["everyMs"], message: "must be an integer of at least 100 (milliseconds)" });
  }
  if (input.tz != null && !isValidTimeZone(input.tz)) issues.push({ path: ["tz"], message: `unknown time zone "${input.tz}"` });
  if (input.tz != null && !hasPattern) issues.push({ path: ["tz"], message: "only applies to a cron pattern" });
  if (hasPattern && issues.length === 0) {
    try {
      CronExpressionParser.parse(input.pattern as string, input.tz ? { tz: input.tz } : {});
    } catch (err) {
      issues.push({ path: ["pattern"], message: `not a valid cron pattern: ${err instanceof Error ? err.message : String(err)}` });
    }
  }
  if (input.limit != null && (!Number.isInteger(input.limit) || input.limit < 1 || input.limit > 1_000_000_000)) {
    issues.push({ path: ["limit"], message: "must be an integer from 1 to 1000000000" });
  }
  for (const key of ["startDate", "endDate"] as const) {
    const d = input[key];
    if (d != null && !Number.isFinite(d.getTime())) issues.push({ path: [key], message: "must be a valid date" });
  }
  if (input.startDate && input.endDate && input.endDate.getTime() <= input.startDate.getTime()) {
    issues.push({ path: ["endDate"], message: "must be after startDate" });
  }
  if (issues.length > 0) throw ValidationError.of(issues);

  const repeat = {
    ...(hasPattern ? { pattern: input.pattern as string, ...(input.tz ? { tz: input.tz } : {}) } : { every: input.everyMs as number }),
    ...(input.limit != null ? { limit: input.limit } : {}),
    ...(input.startDate ? { startDate: input.startDate } : {}),
    ...(input.endDate ? { endDate: input.endDate } : {}),
  };
  return { repeat, data: parsed.data };
}

/** Queues as a whole: live counts, pause / resume, and BullMQ job schedulers. */
export class QueueService {
  private readonly schemas = new Map<JobDefinition, unknown>();

  private readonly registry: JobRegistry;
  private readonly queues: QueueSet;
  private readonly actions: OperatorActionLog;

  constructor(registry: JobRegistry, queues: QueueSet, actions: OperatorActionLog) {
    this.registry = registry;
    this.queues = queues;
    this.actions = actions;
  }

  names(): string[] {
    return this.registry.queues();
  }

  private queueOrThrow(name: string) {
    const queue = this.queues.get(name);
    if (!queue) throw new NotFoundError(`No queue named "${name}"`);
    return queue;
  }

  /** The queue's live state, or null when no such queue is registered. */
  async get(name: string): Promise<QueueView | null> {
    const queue = this.queues.get(name);
    if (!queue) return null;
    // Counts of every state come from one script call; the three reads go out together.
    const [counts, paused, workers] = await Promise.all([readJobCounts(queue), queue.isPaused(), queue.getWorkersCount()]);
    return {
      name,
      paused,
      workers,
      counts,
      jobTypes: this.registry.ofQueue(name).map((def) => {
        let schema = this.schemas.get(def);
        if (schema === undefined) {
          schema = payloadSchema(def);
          this.schemas.set(def, schema);
        }
        return { name: def.name, payloadSchema: schema };
      }),
    };
  }

  async list(): Promise<QueueView[]> {
    const views = await Promise.all(this.names().map((name) => this.get(name)));
    return views.filter((v): v is QueueView => v !== null);
  }

  /** Pauses the queue: its jobs stay waiting; active ones run to the end. Throws NotFoundError. */
  async pause(name: string, actor: string): Promise<QueueView> {
    await this.queueOrThrow(name).pause();
    await this.actions.record({ actor, action: "pauseQueue", queue: name });
    return (await this.get(name)) as QueueView;
  }

  /** Resumes a paused queue (a no-op on a running one). Throws NotFoundError. */
  async resume(name: string, actor: string): Promise<QueueView> {
    await this.queueOrThrow(name).resume();
    await this.actions.record({ actor, action: "resumeQueue", queue: name });
    return (await this.get(name)) as QueueView;
  }

  async schedulers(name: string): Promise<SchedulerView[]> {
    const queue = this.queues.get(name);
    if (!queue) return [];
    const [list, declared] = await Promise.all([queue.getJobSchedulers(0, 999, true), declaredSchedulerIds(queue, this.queues.connection)]);
    return list.map((s) => ({
      id: s.key,
      queue: name,
      name: s.name,
      data: s.template?.data ?? {},
      pattern: s.pattern ?? null,
      everyMs: s.every ?? null,
      tz: s.tz ?? null,
      nextRunAt: s.next ? new Date(s.next) : null,
      limit: s.limit ?? null,
      startDate: s.startDate ? new Date(s.startDate) : null,
      endDate: s.endDate ? new Date(s.endDate) : null,
      declaredInCode: declared.has(s.key),
    }));
  }

  async scheduler(name: string, id: string): Promise<SchedulerView | null> {
    return (await this.schedulers(name)).find((s) => s.id === id) ?? null;
  }

  /**
   * Creates or replaces a scheduler: a cron `pattern` (optionally in `tz`) or `everyMs`, exactly one.
   * The payload is validated against the job type like an enqueue. Throws ValidationError / NotFoundError.
   */
  async upsertScheduler(input: UpsertSchedulerInput, actor: string): Promise<SchedulerView> {
    const queue = this.queueOrThrow(input.queue);
    const def = this.registry.get(input.queue, input.name);
    if (!def) {
      throw ValidationError.at(["name"], `unknown job name "${input.name}" in queue "${input.queue}"`);
    }
    const declared = await declaredSchedulerIds(queue, this.queues.connection);
    if (declared.has(input.id)) {
      throw ValidationError.at(["id"], `scheduler "${input.id}" is declared in code (job definition schedules): change it there`);
    }
    if (input.endDate && input.endDate.getTime() <= Date.now()) throw ValidationError.at(["endDate"], "must be in the future");
    const { repeat, data } = schedulerOptions(def, input);
    await queue.upsertJobScheduler(input.id, repeat, { name: input.name, data });
    const view = await this.scheduler(input.queue, input.id);
    if (!view) throw new Error(`scheduler ${input.id} vanished right after it was written`);
    await this.actions.record({
      actor,
      action: "upsertJobScheduler",
      queue: input.queue,
      details: {
        id: input.id,
        name: input.name,
        data,
        pattern: input.pattern ?? null,
        everyMs: input.everyMs ?? null,
        tz: input.tz ?? null,
        limit: input.limit ?? null,
        startDate: input.startDate ?? null,
        endDate: input.endDate ?? null,
      },
    });
    return view;
  }

  /**
   * Removes a scheduler and the next job it had already put in the queue (a delayed job), so none
   * of its jobs starts after this returns. Throws NotFoundError for an unknown queue or scheduler.
   */
  async removeScheduler(name: string, id: string, actor: string): Promise<SchedulerView> {
    const queue = this.queueOrThrow(name);
    const view = await this.scheduler(name, id);
    if (!view) throw new NotFoundError(`No scheduler "${id}" in queue "${name}"`);
    if (view.declaredInCode) {
      throw ValidationError.at(["id"], `scheduler "${id}" is declared in code (job definition schedules): remove it there`);
    }
    await queue.removeJobScheduler(id);
    // BullMQ removes the scheduler's next job while it is delayed; one already promoted to waiting
    // would still start, so take those out too (scheduler jobs' ids are "repeat:<id>:<time>").
    const pending = await queue.getJobs(["waiting", "prioritized", "delayed"], 0, 999);
    await Promise.all(
      pending.filter((job) => String(job.id).startsWith(`repeat:${id}:`)).map((job) => job.remove().catch(() => undefined)),
    );
    await this.actions.record({ actor, action: "removeJobScheduler", queue: name, details: { id } });
    return view;
  }
}
