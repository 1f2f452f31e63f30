import { Prisma } from "../generated/prisma/client.ts";
import type { Db } from "../infra/prisma.ts";
import type { JobState, JobView } from "./job-view.ts";

/** Prisma's JSON input: `null` must be spelled as its JsonNull marker. */
function json(value: unknown): Prisma.InputJsonValue | typeof Prisma.JsonNull {
  return value === null || value === undefined ? Prisma.JsonNull : (value as Prisma.InputJsonValue);
}

function rowFromView(view: JobView, extra: { delayMs?: number; backoff?: unknown } = {}) {
  return {
    queue: view.queue,
    id: view.id,
    name: view.name,
    data: json(view.data),
    state: view.state,
    progress: json(view.progress),
    attemptsMade: view.attemptsMade,
    maxAttempts: view.maxAttempts,
    priority: view.priority,
    delayMs: extra.delayMs ?? 0,
    backoff: json(extra.backoff),
    createdAt: view.createdAt,
    startedAt: view.startedAt,
    finishedAt: view.finishedAt,
    result: json(view.result),
    failedReason: view.failedReason,
    replayOfId: view.replayOfId,
    tenant: view.tenant,
  };
}

type HistoryRow = Awaited<ReturnType<Db["jobHistory"]["findFirstOrThrow"]>>;

export function viewFromRow(row: HistoryRow): JobView {
  return {
    id: row.id,
    queue: row.queue,
    name: row.name,
    data: row.data,
    state: row.state as JobState,
    progress: row.progress,
    attemptsMade: row.attemptsMade,
    maxAttempts: row.maxAttempts,
    priority: row.priority,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    result: row.result,
    failedReason: row.failedReason,
    replayOfId: row.replayOfId,
    tenant: row.tenant,
  };
}

/** Reads and writes of the job history table. Every write is an upsert: a missing row is created. */
export class HistoryStore {
  constructor(private readonly db: Db) {}

  /** The row of a newly enqueued job; an existing row (an idempotent re-enqueue) is left alone. */
  async recordEnqueued(views: { view: JobView; delayMs: number; backoff: unknown }[]): Promise<void> {
    if (views.length === 0) return;
    await this.db.jobHistory.createMany({
      data: views.map(({ view, delayMs, backoff }) => rowFromView(view, { delayMs, backoff })),
      skipDuplicates: true,
    });
  }

  /** Writes the job's current state; creates the row when the enqueue-time write was lost. */
  async upsert(view: JobView): Promise<void> {
    const row = rowFromView(view);
    const { queue, id, createdAt, data, name, ...changes } = row;
    await this.db.jobHistory.upsert({
      where: { queue_id: { queue, id } },
      create: row,
      update: changes,
    });
  }

  async get(queue: string, id: string): Promise<JobView | null> {
    const row = await this.db.jobHistory.findUnique({ where: { queue_id: { queue, id } } });
    return row ? viewFromRow(row) : null;
  }

  /** The enqueue options a replay copies, as the row recorded them. */
  async options(queue: string, id: string): Promise<{ attempts: number; backoff: unknown; priority: number } | null> {
    const row = await this.db.jobHistory.findUnique({
      where: { queue_id: { queue, id } },
      select: { maxAttempts: true, backoff: true, priority: true },
    });
    return row ? { attempts: row.maxAttempts, backoff: row.backoff, priority: row.priority } : null;
  }

  async exists(queue: string, id: string): Promise<boolean> {
    const row = await this.db.jobHistory.findUnique({ where: { queue_id: { queue, id } }, select: { id: true } });
    return row !== null;
  }

  async replaysOf(queue: string, id: string): Promise<JobView[]> {
    const rows = await this.db.jobHistory.findMany({
      where: { queue, replayOfId: id },
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take: 100,
    });
    return rows.map(viewFromRow);
  }
}
