import { CronExpressionParser } from "cron-parser";
import { z } from "zod";
import { declaredSchedulerIds } from "../bullmq/declared-schedules.ts";
import { isSchedulerJob } from "../bullmq/internals.ts";
import { type JobCounts, readJobCounts, toJobCounts } from "../bullmq/queue-gauges.ts";
import type { QueueSet } from "../bullmq/queue-set.ts";
import type { JobDefinition } from "../define-job.ts";
import { NotFoundError, ValidationError, type ValidationIssue } from "../errors.ts";
import { DEFAULT_MAX_DATA_DEPTH, inputProblem } from "../input-checks.ts";
import { META_KEY, redact, splitData } from "../job-view.ts";
import type { JobRegistry } from "../registry.ts";
import { type Actor, actorTenant, type OperatorActionLog } from "./operator-actions.ts";

export type { JobCounts };
export { toJobCounts };

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
  /** The tenant of the key that created it; its jobs carry it too. */
  tenant: string | null;
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

export interface SchedulerLimits {
  /** Largest `data`, in bytes of its JSON (MAX_PAYLOAD_BYTES, as at enqueue). */
  maxPayloadBytes: number;
  /** Deepest nesting of `data` (MAX_DATA_DEPTH). */
  maxDataDepth: number;
  /** Shortest repeat: `everyMs`, or the gap between two runs of a cron pattern (SCHEDULER_MIN_INTERVAL_MS). */
  minIntervalMs: number;
  /** Most schedulers one queue may hold (MAX_SCHEDULERS_PER_QUEUE). */
  maxPerQueue: number;
}

export const DEFAULT_SCHEDULER_LIMITS: SchedulerLimits = {
  maxPayloadBytes: 512 * 1024,
  maxDataDepth: DEFAULT_MAX_DATA_DEPTH,
  minIntervalMs: 1_000,
  maxPerQueue: 1_000,
};

/** Most schedulers one page of `schedulers` lists. */
export const MAX_SCHEDULER_PAGE = 1_000;

/** The shortest gap between the next runs of a cron pattern (a handful of runs is enough to see it). */
function shortestCronGap(pattern: string, tz: string | null | undefined): number {
  const it = CronExpressionParser.parse(pattern, tz ? { tz } : {});
  let previous = it.next().getTime();
  let shortest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 8 && it.hasNext(); i++) {
    const next = it.next().getTime();
    shortest = Math.min(shortest, next - previous);
    previous = next;
  }
  return shortest;
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

  private readonly limits: SchedulerLimits;

  constructor(registry: JobRegistry, queues: QueueSet, actions: OperatorActionLog, limits: Partial<SchedulerLimits> = {}) {
    this.registry = registry;
    this.queues = queues;
    this.actions = actions;
    this.limits = { ...DEFAULT_SCHEDULER_LIMITS, ...limits };
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
  async pause(name: string, actor: Actor): Promise<QueueView> {
    await this.queueOrThrow(name).pause();
    await this.actions.record({ actor, action: "pauseQueue", queue: name });
    return (await this.get(name)) as QueueView;
  }

  /** Resumes a paused queue (a no-op on a running one). Throws NotFoundError. */
  async resume(name: string, actor: Actor): Promise<QueueView> {
    await this.queueOrThrow(name).resume();
    await this.actions.record({ actor, action: "resumeQueue", queue: name });
    return (await this.get(name)) as QueueView;
  }

  /**
   * One page of the queue's schedulers, ordered by next run (BullMQ's order): `offset` from the
   * start, at most `limit` (1 to 1,000). With `tenant`, only the schedulers that tenant created (the
   * page is taken from the whole list, which MAX_SCHEDULERS_PER_QUEUE bounds). Throws
   * ValidationError for a page out of range.
   */
  async schedulers(name: string, offset = 0, limit = MAX_SCHEDULER_PAGE, tenant: string | null = null): Promise<SchedulerView[]> {
    if (!Number.isInteger(offset) || offset < 0) throw ValidationError.at(["offset"], "must be an integer >= 0");
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SCHEDULER_PAGE) {
      throw ValidationError.at(["limit"], `must be an integer from 1 to ${MAX_SCHEDULER_PAGE}`);
    }
    const queue = this.queues.get(name);
    if (!queue) return [];
    const declared = await declaredSchedulerIds(queue, this.queues.connection);
    if (tenant === null) {
      const list = await queue.getJobSchedulers(offset, offset + limit - 1, true);
      return list.map((s) => this.view(name, s, declared));
    }
    const all = await queue.getJobSchedulers(0, -1, true);
    return all
      .map((s) => this.view(name, s, declared))
      .filter((v) => v.tenant === tenant)
      .slice(offset, offset + limit);
  }

  /** How many schedulers the queue holds (0 for an unknown queue); with `tenant`, that tenant's. */
  async schedulerCount(name: string, tenant: string | null = null): Promise<number> {
    const queue = this.queues.get(name);
    if (!queue) return 0;
    if (tenant === null) return queue.getJobSchedulersCount();
    const all = await queue.getJobSchedulers(0, -1, true);
    return all.filter((s) => this.view(name, s, new Set()).tenant === tenant).length;
  }

  private view(
    name: string,
    s: {
      key: string;
      name: string;
      template?: { data?: unknown };
      pattern?: string | null;
      every?: number | null;
      tz?: string | null;
      next?: number | null;
      limit?: number | null;
      startDate?: number | null;
      endDate?: number | null;
    },
    declared: ReadonlySet<string>,
  ): SchedulerView {
    const { data, meta } = splitData(s.template?.data ?? {});
    return {
      id: s.key,
      queue: name,
      name: s.name,
      data: redact(data, meta.secret),
      pattern: s.pattern ?? null,
      everyMs: s.every ?? null,
      tz: s.tz ?? null,
      nextRunAt: s.next ? new Date(s.next) : null,
      tenant: meta.tenant ?? null,
      limit: s.limit ?? null,
      startDate: s.startDate ? new Date(s.startDate) : null,
      endDate: s.endDate ? new Date(s.endDate) : null,
      declaredInCode: declared.has(s.key),
    };
  }

  /** One scheduler by id, wherever it sits in the list; with `tenant`, null unless that tenant's. */
  async scheduler(name: string, id: string, tenant: string | null = null): Promise<SchedulerView | null> {
    const queue = this.queues.get(name);
    if (!queue) return null;
    const found = await queue.getJobScheduler(id);
    const view = found
      ? this.view(name, { ...found, key: found.key ?? id }, await declaredSchedulerIds(queue, this.queues.connection))
      : null;
    return view && (tenant === null || view.tenant === tenant) ? view : null;
  }

  /**
   * Creates or replaces a scheduler: a cron `pattern` (optionally in `tz`) or `everyMs`, exactly one.
   * The payload is validated against the job type like an enqueue. Throws ValidationError / NotFoundError.
   */
  async upsertScheduler(input: UpsertSchedulerInput, actor: Actor): Promise<SchedulerView> {
    const queue = this.queueOrThrow(input.queue);
    const def = this.registry.get(input.queue, input.name);
    if (!def) {
      throw ValidationError.at(["name"], `unknown job name "${input.name}" in queue "${input.queue}"`);
    }
    const declared = await declaredSchedulerIds(queue, this.queues.connection);
    if (declared.has(input.id)) {
      throw ValidationError.at(["id"], `scheduler "${input.id}" is declared in code (job definition schedules): change it there`);
    }
    const issues: ValidationIssue[] = [];
    if (!input.id || input.id.length > 256 || input.id.includes(":")) {
      issues.push({ path: ["id"], message: "must be 1 to 256 characters, without ':'" });
    }
    // As at enqueue: nesting and NUL first (what follows recurses; PostgreSQL refuses NUL), then size.
    const unstorable = inputProblem(input.data ?? null, this.limits.maxDataDepth, ["data"]);
    if (unstorable) throw ValidationError.of([unstorable]);
    const size = Buffer.byteLength(JSON.stringify(input.data ?? null));
    if (size > this.limits.maxPayloadBytes) {
      issues.push({ path: ["data"], message: `is ${size} bytes, more than the limit of ${this.limits.maxPayloadBytes}` });
    }
    const parsed = def.schema.safeParse(input.data);
    if (!parsed.success) issues.push(...parsed.error.issues.map((i) => ({ path: ["data", ...i.path.map(String)], message: i.message })));
    const hasPattern = input.pattern != null;
    const hasEvery = input.everyMs != null;
    if (hasPattern === hasEvery) {
      issues.push({ path: hasPattern ? ["everyMs"] : ["pattern"], message: "give exactly one of pattern and everyMs" });
    }
    if (hasEvery && (!Number.isInteger(input.everyMs) || (input.everyMs ?? 0) < this.limits.minIntervalMs)) {
      issues.push({ path: ["everyMs"], message: `must be an integer of at least ${this.limits.minIntervalMs} (milliseconds)` });
    }
    if (input.tz != null && !isValidTimeZone(input.tz)) issues.push({ path: ["tz"], message: `unknown time zone "${input.tz}"` });
    if (input.tz != null && !hasPattern) issues.push({ path: ["tz"], message: "only applies to a cron pattern" });
    if (hasPattern && issues.length === 0) {
      try {
        const gap = shortestCronGap(input.pattern as string, input.tz);
        if (gap < this.limits.minIntervalMs) {
          issues.push({
            path: ["pattern"],
            message: `runs every ${gap} ms, more often than the minimum of ${this.limits.minIntervalMs} ms`,
          });
        }
      } catch (err) {
        issues.push({ path: ["pattern"], message: `not a valid cron pattern: ${err instanceof Error ? err.message : String(err)}` });
      }
    }
    // A tenant's scheduler carries its tenant, and so do the jobs it enqueues. Its id may not be
    // another tenant's (nothing else about that scheduler is told).
    // A key bound to no tenant that replaces a tenant's scheduler keeps its tenant.
    const bound = actorTenant(actor);
    const existing = issues.length === 0 ? await this.scheduler(input.queue, input.id) : null;
    if (bound !== null && existing && existing.tenant !== bound) {
      issues.push({ path: ["id"], message: "is already used by another scheduler; choose another" });
    }
    if (issues.length > 0) throw ValidationError.of(issues);
    // A new scheduler must fit under the cap (replacing one always may). Concurrent upserts of new
    // ids can pass this check together and overshoot by as many.
    if (!(await queue.getJobScheduler(input.id)) && (await queue.getJobSchedulersCount()) >= this.limits.maxPerQueue) {
      throw ValidationError.at(
        ["id"],
        `queue "${input.queue}" already has ${this.limits.maxPerQueue} schedulers (MAX_SCHEDULERS_PER_QUEUE); remove one first`,
      );
    }
    const tenant = bound ?? existing?.tenant ?? null;

    if (input.endDate && input.endDate.getTime() <= Date.now()) throw ValidationError.at(["endDate"], "must be in the future");
    // limit, startDate and endDate (and the checks above, again) as schedules declared in code get them.
    const { repeat } = schedulerOptions(def, input);
    // Its jobs carry the tenant and the type's secret paths like an enqueued job.
    const meta = { ...(tenant !== null ? { tenant } : {}), ...(def.secret.length > 0 ? { secret: def.secret } : {}) };
    const data = Object.keys(meta).length === 0 ? parsed.data : { ...(parsed.data as object), [META_KEY]: meta };
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
        data: redact(parsed.data, def.secret),
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
  async removeScheduler(name: string, id: string, actor: Actor): Promise<SchedulerView> {
    const queue = this.queueOrThrow(name);
    const view = await this.scheduler(name, id, actorTenant(actor));
    if (!view) throw new NotFoundError(`No scheduler "${id}" in queue "${name}"`);
    if (view.declaredInCode) {
      throw ValidationError.at(["id"], `scheduler "${id}" is declared in code (job definition schedules): remove it there`);
    }
    await queue.removeJobScheduler(id);
    // BullMQ removes the scheduler's next job while it is delayed; one already promoted to waiting
    // would still start, so take those out too.
    const pending = await queue.getJobs(["waiting", "prioritized", "delayed"], 0, 999);
    await Promise.all(pending.filter((job) => isSchedulerJob(job.id, id)).map((job) => job.remove().catch(() => undefined)));
    await this.actions.record({ actor, action: "removeJobScheduler", queue: name, details: { id } });
    return view;
  }
}
