import type { Logger } from "../../infra/logger.ts";
import { Periodic } from "../../infra/periodic.ts";
import type { Db } from "../../infra/prisma.ts";
import type { RedisClient } from "../../infra/redis.ts";
import { channels, keySpace, keys } from "../bullmq/keys.ts";
import { Lease } from "../bullmq/lease.ts";
import { InvalidStateError, NotFoundError, ValidationError, type ValidationIssue } from "../errors.ts";
import { type BulkActionEvent, bulkActionFeed, bulkEventId } from "../events/bulk-action-feed.ts";
import type { EventChannels } from "../events/channels.ts";
import type {
  BulkActionKind,
  BulkItemResult,
  BulkOutcome,
  BulkOutcomeView,
  BulkSelectionItem,
  BulkSelectionStore,
  BulkSelectionView,
} from "../history/bulk-selections.ts";
import type { JobListFilter } from "../history/history-queries.ts";
import { type JobState, type JobView, TERMINAL_STATES } from "../job-view.ts";
import type { JobControl } from "./job-control.ts";
import type { JobService } from "./job-service.ts";
import { type Actor, actorName, type OperatorActionInput, type OperatorActionLog } from "./operator-actions.ts";

export interface BulkActionOptions {
  /** Most jobs one selection may hold (BULK_MAX_SELECTION). */
  maxSelection: number;
  /** How long a dry run's selection may be confirmed (BULK_SELECTION_TTL_MS). */
  selectionTtlMs: number;
  /** Jobs per batch: each batch's outcomes and counts are written together (BULK_BATCH_SIZE). */
  batchSize: number;
  /** The running instance's lease on an action; another instance resumes it this long after it died (BULK_LEASE_MS). */
  leaseMs: number;
  /** Jobs of a batch acted on at once. */
  concurrency?: number;
}

/** The operator who acts, and what its key may see (the selection's scope). */
export interface BulkSelector {
  actor: Actor;
  /** The key's tenant (null: not bound). */
  tenant: string | null;
  /** The key's queue limit (null: every queue). */
  queues: readonly string[] | null;
}

const RETRYABLE: ReadonlySet<JobState> = new Set(["FAILED", "CANCELLED"]);

/** Whether `action` applies to a job in `state` (null: the job is gone). DISMISS_AUDIT runs in SQL, see BulkSelectionStore.dismissBatch. */
function applies(action: BulkActionKind, state: JobState | null): boolean {
  if (state === null) return false;
  switch (action) {
    case "CANCEL":
      return !TERMINAL_STATES.has(state);
    case "RETRY":
      return RETRYABLE.has(state);
    case "REPLAY":
      // A job still waiting or running would then run twice at once: replay what has ended.
      return TERMINAL_STATES.has(state);
    case "DISMISS_AUDIT":
      return true;
  }
}

const SKIP_REASON: Record<BulkActionKind, string> = {
  CANCEL: "already ended",
  RETRY: "not FAILED or CANCELLED",
  REPLAY: "not ended yet",
  DISMISS_AUDIT: "",
};

/** The reason a bulk cancel gives: it names the selection, which tells, after a restart, a cancel this action made. */
function cancelReason(selectionId: string, actor: string): string {
  return `bulk action ${selectionId} by ${actor}`;
}

/** The id a bulk replay's new job gets: fixed per selection and position, so replaying again finds it. */
export function bulkReplayId(selectionId: string, seq: number): string {
  return `bulk-${selectionId}-${seq}`;
}

/**
 * A finished bulk action's operator actions: one per queue of its jobs (an empty selection: one per
 * queue of its scope, or one with queue "" when it had none), each counting that queue's jobs only.
 */
export function bulkAuditRows(
  done: BulkSelectionView,
  counts: readonly { queue: string; outcome: BulkOutcome; state: string | null; count: number }[],
): OperatorActionInput[] {
  const queues = done.queues.length > 0 ? done.queues : done.scopeQueues.length > 0 ? done.scopeQueues : [""];
  return queues.map((queue) => {
    const tally = { total: 0, acted: 0, skipped: 0, failed: 0 };
    const skippedByState: Record<string, number> = {};
    for (const c of counts) {
      if (c.queue !== queue) continue;
      tally.total += c.count;
      if (c.outcome === "ACTED") tally.acted += c.count;
      if (c.outcome === "FAILED") tally.failed += c.count;
      if (c.outcome === "SKIPPED") {
        tally.skipped += c.count;
        const state = c.state ?? "MISSING";
        skippedByState[state] = (skippedByState[state] ?? 0) + c.count;
      }
    }
    return {
      actor: { name: done.confirmedBy ?? done.actor, tenant: done.tenant },
      action: "bulkJobAction",
      queue,
      selectionId: done.id,
      details: { selectionId: done.id, bulkAction: done.action, filter: done.filter, selectedBy: done.actor, ...tally, skippedByState },
    };
  });
}

const cut = (s: string) => (s.length > 500 ? `${s.slice(0, 499)}…` : s);

/**
 * Bulk actions (issue #20): `select` freezes the jobs a `jobs` filter matches (a dry run), `confirm`
 * starts acting on exactly those, and every API instance runs `start`'s loop, which resumes actions
 * under way: an action is worked through by whichever instance holds its lease (bullmq/lease.ts), in
 * batches of `batchSize`, each job through the same code path as its single-job mutation (cancelJob,
 * retryJob, replayJob; the inbox for DISMISS_AUDIT) without the per-job audit row. After each batch
 * the counts go to `bulkActionEvents` subscribers; at the end one operator action records the whole.
 *
 * Exactly once across restarts: each job's outcome is written once (see BulkSelectionStore.record).
 * A batch cut short by a crash has acted on some jobs without writing their outcomes; those jobs were
 * claimed (their state noted) before acting, and are checked again when the action resumes: a cancel
 * is recognised by its reason (it names the selection), a replay by its fixed id, a retry by the
 * job having left FAILED / CANCELLED since the claim; DISMISS_AUDIT writes its outcomes in the
 * transaction that dismisses.
 */
export class BulkActions {
  private readonly db: Db;
  private readonly store: BulkSelectionStore;
  private readonly control: JobControl;
  private readonly jobs: JobService;
  private readonly actions: OperatorActionLog;
  private readonly redis: RedisClient;
  private readonly prefix: string;
  private readonly channels: EventChannels<BulkActionEvent>;
  private readonly log: Logger;
  private readonly options: Required<BulkActionOptions>;
  private readonly runs = new Map<string, Promise<void>>();
  private readonly loop: Periodic;
  private stopping = false;

  constructor(deps: {
    db: Db;
    store: BulkSelectionStore;
    control: JobControl;
    jobs: JobService;
    actions: OperatorActionLog;
    redis: RedisClient;
    prefix: string;
    /** This process's bulk-event channels: subscriptions join them; progress made here reaches them without the pub/sub round trip. */
    channels: EventChannels<BulkActionEvent>;
    log: Logger;
    options: BulkActionOptions;
  }) {
    this.db = deps.db;
    this.store = deps.store;
    this.control = deps.control;
    this.jobs = deps.jobs;
    this.actions = deps.actions;
    this.redis = deps.redis;
    this.prefix = deps.prefix;
    this.channels = deps.channels;
    this.log = deps.log;
    this.options = { concurrency: 16, ...deps.options };
    this.loop = new Periodic(() => this.resume(), {
      intervalMs: Math.max(250, Math.floor(this.options.leaseMs / 2)),
      unref: true,
      onError: (err) => this.log.warn("bulk actions: resume pass failed", { err: err instanceof Error ? err.message : String(err) }),
    });
  }

  get maxSelection(): number {
    return this.options.maxSelection;
  }

  /** Starts resuming actions under way (at once, then every half lease) and sweeping expired selections. */
  start(): void {
    this.stopping = false;
    this.loop.start();
  }

  /** Stops after the batches under way and gives their leases back, so another instance resumes them at once. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop.stop();
    await Promise.allSettled([...this.runs.values()]);
  }

  /**
   * The dry run: freezes what `filter` matches (with the selector's tenant and queue limit applied by
   * the caller) as a PENDING selection. The selection's scope: the selector's tenant, else the
   * filter's; the filter's queue, else the selector's queue limit. Only a key whose reach covers
   * that scope may see or confirm it.
   */
  async select(action: BulkActionKind, filter: JobListFilter, given: unknown, by: BulkSelector): Promise<BulkSelectionView> {
    return this.store.create({
      action,
      actor: actorName(by.actor),
      tenant: by.tenant ?? filter.tenant ?? null,
      scopeQueues: filter.queue ? [filter.queue] : (by.queues ?? []),
      filter,
      given,
      max: this.options.maxSelection,
      ttlMs: this.options.selectionTtlMs,
    });
  }

  get(id: string): Promise<BulkSelectionView | null> {
    return this.store.get(id);
  }

  /** The first `first` (1-100) jobs of a selection. */
  sample(id: string, first: number): Promise<{ queue: string; id: string }[]> {
    if (!Number.isInteger(first) || first < 1 || first > 100)
      throw ValidationError.at(["first"], `must be an integer from 1 to 100 (got ${first})`);
    return this.store.sample(id, first);
  }

  /** A selection's jobs with their outcomes, in order; `first` 1-1000. */
  outcomes(id: string, filter: { outcome?: BulkOutcome | null; first: number; afterSeq: number }): Promise<BulkOutcomeView[]> {
    const issues: ValidationIssue[] = [];
    if (!Number.isInteger(filter.first) || filter.first < 1 || filter.first > 1000)
      issues.push({ path: ["first"], message: `must be an integer from 1 to 1000 (got ${filter.first})` });
    if (!Number.isInteger(filter.afterSeq) || filter.afterSeq < 0)
      issues.push({ path: ["afterPosition"], message: `must be an integer >= 0 (got ${filter.afterSeq})` });
    if (issues.length > 0) throw ValidationError.of(issues);
    return this.store.outcomes(id, filter);
  }

  /** Jobs per outcome and state then. */
  outcomeCounts(id: string): Promise<{ outcome: BulkOutcome; state: string | null; count: number }[]> {
    return this.store.outcomeCounts(id);
  }

  /**
   * Confirms a PENDING selection and starts acting on it here (any instance resumes it if this one
   * dies). `visible`: whether the caller may see it; an invisible, unknown or expired one throws
   * `unknown()`. See BulkSelectionStore.confirm for the other refusals.
   */
  async confirm(id: string, by: Actor, visible: (s: BulkSelectionView) => boolean, unknown: () => Error): Promise<BulkSelectionView> {
    const row = await this.store.confirm(id, actorName(by), visible, unknown);
    void this.run(id);
    return row;
  }

  /**
   * `bulkActionEvents`: the counts now (SNAPSHOT), then after each batch (PROGRESS), ending after DONE.
   * A selection the caller may not see, an unknown one and an expired dry run throw `unknown()`.
   */
  async events(
    id: string,
    visible: (s: BulkSelectionView) => boolean,
    unknown: () => Error,
  ): Promise<AsyncIterableIterator<BulkActionEvent>> {
    return bulkActionFeed(this.channels, channels.bulk(keySpace(this.prefix), id), async () => {
      const s = await this.store.get(id);
      if (!s || !visible(s) || (s.status === "PENDING" && s.expiresAt.getTime() <= Date.now())) throw unknown();
      return this.event(s, "SNAPSHOT");
    });
  }

  private event(s: BulkSelectionView, type: BulkActionEvent["type"]): BulkActionEvent {
    return {
      id: bulkEventId(s.processed, s.status === "DONE"),
      type,
      selectionId: s.id,
      status: s.status,
      total: s.total,
      processed: s.processed,
      acted: s.acted,
      skipped: s.skipped,
      failed: s.failed,
      at: new Date(),
    };
  }

  private async publish(event: BulkActionEvent): Promise<void> {
    const channel = channels.bulk(keySpace(this.prefix), event.selectionId);
    this.channels.emit(channel, event);
    try {
      await this.redis.publish(channel, JSON.stringify(event));
    } catch (err) {
      this.log.warn("bulk actions: could not publish progress", { selectionId: event.selectionId, err: (err as Error).message });
    }
  }

  /** One pass: sweeps expired selections, then takes up every action under way that no live instance holds. */
  private async resume(): Promise<void> {
    await this.store.sweep();
    for (const id of await this.store.running()) {
      if (this.stopping) return;
      if (!this.runs.has(id)) void this.run(id);
    }
  }

  /** Works an action through to its end while this instance holds its lease; returns at once when another holds it. */
  run(id: string): Promise<void> {
    const existing = this.runs.get(id);
    if (existing) return existing;
    const running = this.runHeld(id)
      .catch((err) => this.log.error("bulk action interrupted (it resumes on the next pass)", { selectionId: id, err }))
      .finally(() => this.runs.delete(id));
    this.runs.set(id, running);
    return running;
  }

  private async runHeld(id: string): Promise<void> {
    const lease = new Lease(this.redis, keys.bulkLease(keySpace(this.prefix), id), this.options.leaseMs);
    if (!(await lease.acquire())) return;
    let lost = false;
    const renew = setInterval(
      () =>
        // Not renewed (lost, or Redis did not answer): stop after this batch rather than risk two runners.
        void lease.renew().then(
          (held) => {
            if (!held) lost = true;
          },
          () => {
            lost = true;
          },
        ),
      Math.max(100, Math.floor(this.options.leaseMs / 3)),
    );
    try {
      let selection = await this.store.get(id);
      if (selection?.status !== "RUNNING") return;
      await this.publish(this.event(selection, "PROGRESS"));
      for (;;) {
        if (this.stopping || lost) return;
        const batch = await this.store.nextBatch(id, this.options.batchSize);
        if (batch.length === 0) break;
        selection = await this.runBatch(selection, batch);
        await this.publish(this.event(selection, "PROGRESS"));
      }
      const done = await this.finish(selection);
      if (done) await this.publish(this.event(done, "DONE"));
    } finally {
      clearInterval(renew);
      await lease.release().catch(() => undefined);
    }
  }

  /**
   * RUNNING -> DONE and the action's operator actions, in one transaction (so neither happens twice):
   * one row per queue it touched, each with that queue's counts only, all with the selection id (see
   * bulkAuditRows). A key limited to some queues lists the rows of its queues, and learns nothing of
   * the others'.
   */
  private async finish(selection: BulkSelectionView): Promise<BulkSelectionView | null> {
    const counts = await this.store.outcomeCountsByQueue(selection.id);
    return this.db.$transaction(async (tx) => {
      const done = await this.store.finish(selection.id, tx);
      if (!done) return null;
      for (const row of bulkAuditRows(done, counts)) await this.actions.recordIn(tx, row);
      return done;
    });
  }

  /** Acts on one batch and writes its outcomes; returns the selection with its new counts. */
  private async runBatch(selection: BulkSelectionView, batch: BulkSelectionItem[]): Promise<BulkSelectionView> {
    const action = selection.action;
    const actor = selection.confirmedBy ?? selection.actor;
    if (action === "DISMISS_AUDIT") return this.store.dismissBatch(selection.id, batch, actor);
    const views = await this.mapLimit(batch, (item) => this.jobs.getJob(item.queue, item.jobId));
    const results: BulkItemResult[] = [];
    const todo: { item: BulkSelectionItem; view: JobView }[] = [];
    for (const [i, item] of batch.entries()) {
      const view = views[i] ?? null;
      const redone =
        item.claimedState !== null ? (this.doneBefore(selection, item, view) ?? (await this.cutShort(selection, item, actor))) : null;
      if (redone) results.push(redone);
      else if (view && applies(action, view.state)) todo.push({ item, view });
      else
        results.push({
          seq: item.seq,
          outcome: "SKIPPED",
          state: view?.state ?? null,
          detail: view ? `${view.state}: ${SKIP_REASON[action]}` : "no such job any more",
        });
    }
    await this.store.claim(
      selection.id,
      todo.map(({ item, view }) => ({ seq: item.seq, state: view.state })),
    );
    const acted = await this.mapLimit(todo, ({ item, view }) => this.actOn(selection, item, view, actor));
    results.push(...acted);
    return this.store.record(selection.id, results);
  }

  /**
   * For a job a cut-short batch claimed: its outcome when the action had already been done to it,
   * else null (it is looked at afresh). See the class comment.
   */
  private doneBefore(selection: BulkSelectionView, item: BulkSelectionItem, view: JobView | null): BulkItemResult | null {
    const done = (state: string | null): BulkItemResult => ({ seq: item.seq, outcome: "ACTED", state, detail: "done before a restart" });
    switch (selection.action) {
      case "CANCEL":
        return view?.state === "CANCELLED" && view.failedReason?.includes(selection.id) ? done(item.claimedState) : null;
      case "RETRY":
        return view && !RETRYABLE.has(view.state) ? done(item.claimedState) : null;
      default:
        // REPLAY: replaying again finds the replay by its fixed id (enqueue is idempotent on it).
        return null;
    }
  }

  /**
   * For a claimed job of a CANCEL whose process died after taking it out of Redis and before writing
   * its CANCELLED row: the cancel is finished (row and event) and counts ACTED, once. Else null.
   */
  private async cutShort(selection: BulkSelectionView, item: BulkSelectionItem, actor: string): Promise<BulkItemResult | null> {
    if (selection.action !== "CANCEL" || item.claimedState === null) return null;
    const view = await this.control.finishInterruptedCancel(item.queue, item.jobId, item.claimedState, cancelReason(selection.id, actor));
    return view ? { seq: item.seq, outcome: "ACTED", state: item.claimedState, detail: "done before a restart" } : null;
  }

  /** One job through its single-job code path; InvalidStateError / NotFoundError (it changed meanwhile) are SKIPPED. */
  private async actOn(selection: BulkSelectionView, item: BulkSelectionItem, view: JobView, actor: string): Promise<BulkItemResult> {
    const who = { name: actor, tenant: selection.tenant };
    const perJob = { audit: false, wait: false } as const;
    try {
      switch (selection.action) {
        case "CANCEL":
          await this.control.cancel(item.queue, item.jobId, cancelReason(selection.id, actor), who, perJob);
          break;
        case "RETRY":
          await this.control.retry(item.queue, item.jobId, who, perJob);
          break;
        case "REPLAY": {
          const replay = await this.control.replay(item.queue, item.jobId, undefined, undefined, who, {
            ...perJob,
            jobId: bulkReplayId(selection.id, item.seq),
          });
          return { seq: item.seq, outcome: "ACTED", state: view.state, detail: `replayed as ${replay.id}` };
        }
        case "DISMISS_AUDIT":
          throw new Error("DISMISS_AUDIT runs in SQL");
      }
      return { seq: item.seq, outcome: "ACTED", state: view.state };
    } catch (err) {
      if (err instanceof InvalidStateError) return { seq: item.seq, outcome: "SKIPPED", state: err.state, detail: cut(err.message) };
      if (err instanceof NotFoundError) return { seq: item.seq, outcome: "SKIPPED", state: null, detail: cut(err.message) };
      return { seq: item.seq, outcome: "FAILED", state: view.state, detail: cut(err instanceof Error ? err.message : String(err)) };
    }
  }

  /** `fn` over `items`, at most `concurrency` at once, results in order. */
  private async mapLimit<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
    const out = new Array<R>(items.length);
    let next = 0;
    const lanes = Array.from({ length: Math.min(this.options.concurrency, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i] as T);
    });
    await Promise.all(lanes);
    return out;
  }
}
