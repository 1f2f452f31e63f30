import type { Logger } from "../../infra/logger.ts";
import type { JobIds } from "../bullmq/job-ids.ts";
import { UnavailableError } from "../errors.ts";
import type { DurableRecords } from "../history/durable-records.ts";
import type { HistoryStore, Write } from "../history/history-store.ts";
import type { JobView } from "../job-view.ts";

/** A row to commit at enqueue; `fresh`: its id was issued by the counter (not the client's `jobId`). */
export type EnqueueWrite = Write & { fresh: boolean };

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The enqueue's side of durable enqueue (issue #18): PostgreSQL is the record, so a job's history row
 * is committed before the job is added to Redis, and an enqueue whose row cannot be written fails
 * with nothing in Redis. For that the job's id must be known before the add: ids come from the API's
 * own counter (`JobIds`), seeded from history whenever Redis has none (first start, or a Redis that
 * came back empty), so an id history already holds is never handed out again.
 */
export class DurableEnqueue {
  private readonly ids: JobIds;
  private readonly history: HistoryStore;
  private readonly records: DurableRecords;
  private readonly log: Logger;
  /** One seeding per queue at a time: concurrent enqueues that find no counter wait for the same one. */
  private readonly seeding = new Map<string, Promise<void>>();

  constructor(ids: JobIds, history: HistoryStore, records: DurableRecords, log: Logger) {
    this.ids = ids;
    this.history = history;
    this.records = records;
    this.log = log;
  }

  /** `count` fresh ids of `queue`, seeding the counter from history first when Redis has none. */
  async reserve(queue: string, count: number): Promise<string[]> {
    if (count === 0) return [];
    for (let tries = 0; tries < 3; tries++) {
      const ids = await this.ids.reserve(queue, count);
      if (ids) return ids;
      await this.seed(queue);
    }
    throw new Error(`the job-id counter of queue "${queue}" vanished right after it was seeded three times`);
  }

  private seed(queue: string): Promise<void> {
    let running = this.seeding.get(queue);
    if (!running) {
      running = (async () => {
        let floor: number;
        try {
          floor = await this.records.maxNumericId(queue);
        } catch (err) {
          throw new UnavailableError(
            `Job history (PostgreSQL) is unavailable, so no job id can be issued safely; nothing was enqueued. Retry later. (${reason(err)})`,
            { cause: err },
          );
        }
        await this.ids.seed(queue, floor);
        this.log.info("job-id counter seeded from history", { queue, floor });
      })().finally(() => this.seeding.delete(queue));
      this.seeding.set(queue, running);
    }
    return running;
  }

  /**
   * Commits the rows of jobs about to be added; throws an UnavailableError (nothing enqueued) when it
   * cannot. Rows of jobs with a `fresh` id (issued by the counter) never overwrite a row: if history
   * already holds the id, the counter was behind (a Redis that came back with an older copy of it,
   * e.g. AOF everysec losing its last second), so it is seeded again and those jobs get new ids (their
   * views are updated in place).
   */
  async record(writes: EnqueueWrite[]): Promise<void> {
    try {
      const given = writes.filter((w) => !w.fresh);
      await Promise.all([given.length > 0 ? this.history.recordEnqueued(given) : null, this.recordFresh(writes.filter((w) => w.fresh))]);
    } catch (err) {
      if (err instanceof UnavailableError) throw err;
      this.log.warn("history write at enqueue failed; the enqueue fails and nothing is added to Redis", {
        count: writes.length,
        err: reason(err),
      });
      const what = writes.length === 1 ? "The job's history row" : `The history rows of ${writes.length} jobs`;
      throw new UnavailableError(`${what} could not be written to PostgreSQL, so nothing was enqueued; retry later. (${reason(err)})`, {
        cause: err,
      });
    }
  }

  private async recordFresh(writes: EnqueueWrite[]): Promise<void> {
    let pending: Write[] = writes;
    for (let round = 0; pending.length > 0; round++) {
      if (round === 3) throw new Error(`job ids issued three times over were all already in history (${pending.length} jobs)`);
      const taken = await this.records.insertFresh(pending);
      if (taken.length === 0) return;
      const queues = [...new Set(taken.map((w) => w.view.queue))];
      this.log.warn("job-id counter behind history (Redis lost recent writes): seeding it again", {
        queues,
        taken: taken.map((w) => w.view.id),
      });
      for (const queue of queues) {
        await this.seed(queue);
        const mine = taken.filter((w) => w.view.queue === queue);
        const ids = await this.reserve(queue, mine.length);
        for (const [k, w] of mine.entries()) w.view.id = ids[k] as string;
      }
      pending = taken;
    }
  }

  /** ENQUEUE_ACK=redis: the rows of jobs already added and acknowledged, written without waiting; a failure is logged. */
  recordLater(writes: Write[]): void {
    if (writes.length === 0) return;
    this.history.recordEnqueued(writes).catch((err) => {
      this.log.warn("history write after enqueue failed (ENQUEUE_ACK=redis); the worker will create the rows", {
        count: writes.length,
        err: reason(err),
      });
    });
  }

  /**
   * The add to Redis failed after the rows were committed: takes the rows back, so history does not
   * hold jobs the client was told were not enqueued (the recovery reconciler would otherwise re-add
   * them). If that fails too it is logged; rows younger than the reconciler's grace are never re-added.
   */
  async forget(views: JobView[]): Promise<void> {
    try {
      await this.records.forget(views.map((v) => ({ queue: v.queue, id: v.id, createdAt: v.createdAt })));
    } catch (err) {
      this.log.error("could not delete the history rows of jobs whose add to Redis failed", {
        jobs: views.map((v) => `${v.queue}/${v.id}`),
        err: reason(err),
      });
    }
  }
}
