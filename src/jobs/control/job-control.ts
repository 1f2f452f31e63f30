import type { Job } from "bullmq";
import { z } from "zod";
import type { RedisClient } from "../../infra/redis.ts";
import { cancellation, clearCancelMark, markCancelled } from "../bullmq/cancellation.ts";
import { appendCancelledEvent } from "../bullmq/internals.ts";
import type { QueueSet } from "../bullmq/queue-set.ts";
import { InvalidStateError, NotFoundError, ValidationError, type ValidationIssue } from "../errors.ts";
import type { FailedJobInbox } from "../history/failed-job-inbox.ts";
import type { FlowRow, HistoryStore } from "../history/history-store.ts";
import {
  CANCELLED_PREFIX,
  fromBullState,
  type JobState,
  type JobView,
  REDACTED,
  splitData,
  TERMINAL_STATES,
  viewFromBull,
} from "../job-view.ts";
import { maskedPaths } from "../payload-cipher.ts";
import { type EnqueueInput, type FlowNodeInput, type JobService, PARENT_POLICIES } from "./job-service.ts";
import { applyMergePatch } from "./merge-patch.ts";
import { type Actor, actorName, type OperatorActionLog } from "./operator-actions.ts";

export interface JobControlOptions {
  /** How long cancelJob waits for an active job to end before answering with its state then. */
  cancelWaitMs: number;
  /** Most jobs one retryFailedJobs call may retry. */
  maxBulkRetry: number;
  /** Most jobs of a flow that cancel and replay of its parent walk (MAX_FLOW_NODES); default 1000. */
  maxFlowNodes?: number;
}

/**
 * How a bulk action (bulk-actions.ts) calls the per-job paths: `audit: false` leaves out the per-job
 * operator action (the bulk action writes one row with its counts), `wait: false` answers a cancel of
 * an active job at once (the worker is told; the job ends CANCELLED when it stops), `jobId` gives a
 * replay a fixed id (so replaying again, after a restart, finds it instead of enqueueing another).
 */
export interface PerJobOptions {
  audit?: boolean;
  wait?: boolean;
  jobId?: string;
}

const WAITING_STATES: ReadonlySet<JobState> = new Set(["WAITING", "PRIORITIZED", "DELAYED", "WAITING_CHILDREN"]);
const RETRYABLE_STATES: ReadonlySet<JobState> = new Set(["FAILED", "CANCELLED"]);

const reasonSchema = z.string().max(1000, "must be at most 1000 characters");

/** When a failed job's last failure happened (its audit row's failedAt), or null when unknown. */
function failureTime(job: Job): Date | null {
  return job.finishedOn ? new Date(job.finishedOn) : null;
}

/** BullMQ's backoff option as our enqueue input spells it. */
function backoffInput(backoff: unknown): EnqueueInput["backoff"] {
  if (typeof backoff === "number") return { type: "FIXED", delayMs: backoff };
  if (backoff && typeof backoff === "object") {
    const b = backoff as { type?: string; delay?: number };
    if ((b.type === "fixed" || b.type === "exponential") && typeof b.delay === "number") {
      return { type: b.type === "fixed" ? "FIXED" : "EXPONENTIAL", delayMs: b.delay };
    }
  }
  return null;
}

/**
 * The control mutations: cancel, retry, replay. Each one that succeeds writes an operator action.
 * Throws NotFoundError, InvalidStateError (carrying the job's current state) or ValidationError.
 */
export class JobControl {
  private readonly jobs: JobService;
  private readonly queues: QueueSet;
  private readonly history: HistoryStore;
  private readonly actions: OperatorActionLog;
  private readonly redis: RedisClient;
  private readonly options: JobControlOptions;
  private readonly inbox: FailedJobInbox | undefined;

  constructor(
    jobs: JobService,
    queues: QueueSet,
    history: HistoryStore,
    actions: OperatorActionLog,
    redis: RedisClient,
    options: JobControlOptions,
    /** Marks the failed-job audit rows of retried and replayed jobs resolved. */
    inbox?: FailedJobInbox,
  ) {
    this.jobs = jobs;
    this.queues = queues;
    this.history = history;
    this.actions = actions;
    this.redis = redis;
    this.options = options;
    this.inbox = inbox;
  }

  /**
   * Takes failed-job audit rows out of the inbox (DISMISSED), recording one operator action per queue
   * they belong to. Returns how many it dismissed; see FailedJobInbox.dismiss for what it refuses.
   */
  /** `access`: a tenant-bound or queue-limited key dismisses only rows it may see (others count as unknown ids). */
  async dismissFailedJobAudits(
    ids: readonly string[],
    actor: string,
    access: { tenant?: string; queues?: readonly string[] } = {},
  ): Promise<number> {
    if (!this.inbox) throw new Error("no failed-job inbox configured");
    const dismissed = await this.inbox.dismiss(ids, actor, access);
    const byQueue = new Map<string, string[]>();
    for (const row of dismissed) byQueue.set(row.queue, [...(byQueue.get(row.queue) ?? []), row.id]);
    for (const [queue, auditIds] of byQueue) {
      await this.actions.record({ actor, action: "dismissFailedJobAudits", queue, details: { ids: auditIds } });
    }
    return dismissed.length;
  }

  private queueOrThrow(name: string) {
    const queue = this.queues.get(name);
    if (!queue) throw new NotFoundError(`No queue named "${name}"`);
    return queue;
  }

  /** The job Redis holds with its state, or the reason it can't be acted on. */
  private async liveJob(queueName: string, id: string): Promise<{ job: Job; state: JobState } | { job: null; known: JobView | null }> {
    const job = await this.queueOrThrow(queueName).getJob(id);
    const bullState = job ? await job.getState() : null;
    const state = job && bullState ? fromBullState(bullState, bullState === "failed" && (await this.queues.isCancelled(job))) : null;
    if (job && state) return { job, state };
    return { job: null, known: await this.history.get(queueName, id) };
  }

  /**
   * Cancels a job. Waiting, prioritized and delayed jobs leave the queue at once and are recorded
   * CANCELLED. An active job's worker (any process) is told to abort it; the answer comes once the
   * job has ended, or after `cancelWaitMs` with its state then (the subscription sees the end).
   */
  async cancel(
    queueName: string,
    id: string,
    reason: string | null | undefined,
    actor: Actor,
    options: PerJobOptions = {},
  ): Promise<JobView> {
    const why = reasonSchema.safeParse(reason ?? "");
    if (!why.success) throw ValidationError.at(["reason"], why.error.issues[0]?.message ?? "invalid");
    const text = why.data.trim() || `cancelled by ${actorName(actor)}`;
    const found = await this.liveJob(queueName, id);
    if (!found.job) {
      if (found.known) throw new InvalidStateError(`Job "${id}" is already ${found.known.state}`, found.known.state);
      throw new NotFoundError(`No job "${id}" in queue "${queueName}"`);
    }
    const { job, state } = found;
    if (TERMINAL_STATES.has(state)) throw new InvalidStateError(`Job "${id}" is already ${state}`, state);

    const view = await this.cancelOne(job, state, text, options.wait !== false);
    // A flow parent: its unfinished children (and theirs) are cancelled too, and the audit says which.
    const children = await this.cancelDescendants(queueName, id, text);
    if (options.audit !== false)
      await this.actions.record({
        actor,
        action: "cancelJob",
        queue: queueName,
        jobId: id,
        details: { reason: text, previousState: state, ...(children.length > 0 ? { cancelledChildren: children } : {}) },
      });
    return view;
  }

  /**
   * Cancels one job Redis holds in a state that is not terminal: marks it, then takes a waiting one
   * out of the queue (recorded CANCELLED at once) or tells the worker running an active one to abort
   * it (`wait`: answers once it ended, or after cancelWaitMs; else with its state now).
   */
  private async cancelOne(job: Job, state: JobState, text: string, wait: boolean): Promise<JobView> {
    const space = this.queues.space;
    const queueName = job.queueName;
    const id = String(job.id);
    // The mark first: a worker that picks the job up from now on fails it as cancelled instead of running it.
    await markCancelled(this.redis, space, queueName, id, `${CANCELLED_PREFIX}: ${text}`);
    if (WAITING_STATES.has(state) && (await this.tryRemove(job))) {
      const view = { ...viewFromBull(job, "CANCELLED"), finishedAt: new Date(), failedReason: `${CANCELLED_PREFIX}: ${text}` };
      await this.history.upsert(view);
      // Into BullMQ's own events stream, so subscribers see CANCELLED in order with everything else.
      await appendCancelledEvent(this.redis, space, queueName, this.queues.eventsMaxLen, id, text);
      return view;
    }
    await this.redis.publish(cancellation.channel(space, queueName), JSON.stringify({ queue: queueName, jobId: id, reason: text }));
    return wait ? this.waitForEnd(queueName, id) : ((await this.jobs.getJob(queueName, id)) ?? viewFromBull(job, state));
  }

  /**
   * Finishes a cancel whose process died between taking a waiting job out of Redis and writing its
   * CANCELLED row (cancelOne's two steps): for a job Redis no longer holds whose history still says
   * `claimedState`, the waiting state it was in when the cut-short cancel began. Writes the row and
   * the event as cancelOne would and returns the view; null when Redis still holds the job or history
   * moved on (then it is looked at afresh). A bulk action's resumed batch calls it for jobs it claimed.
   */
  async finishInterruptedCancel(queueName: string, id: string, claimedState: string, text: string): Promise<JobView | null> {
    if (!WAITING_STATES.has(claimedState as JobState)) return null;
    const found = await this.liveJob(queueName, id);
    if (found.job || !found.known || found.known.state !== claimedState) return null;
    const view: JobView = { ...found.known, state: "CANCELLED", finishedAt: new Date(), failedReason: `${CANCELLED_PREFIX}: ${text}` };
    await this.history.upsert(view);
    await appendCancelledEvent(this.redis, this.queues.space, queueName, this.queues.eventsMaxLen, id, text);
    return view;
  }

  /**
   * Cancels every unfinished job of the flow under a parent (children, theirs, ...; found through
   * history's parent_id, each state read again from Redis), 25 at a time. The parent is out of the
   * queue (or marked) first, so none of their ends can start it. Returns `<queue>:<id>` of each.
   */
  private async cancelDescendants(queueName: string, id: string, text: string): Promise<string[]> {
    const rows = await this.history.descendants(queueName, id, this.options.maxFlowNodes ?? 1000);
    const cancelled: string[] = [];
    const open = rows.filter((r) => !TERMINAL_STATES.has(r.state));
    for (let i = 0; i < open.length; i += 25) {
      await Promise.all(
        open.slice(i, i + 25).map(async (row) => {
          const found = await this.liveJob(row.queue, row.id);
          if (!found.job || TERMINAL_STATES.has(found.state)) return;
          await this.cancelOne(found.job, found.state, text, false);
          cancelled.push(`${row.queue}:${row.id}`);
        }),
      );
    }
    return cancelled.sort();
  }

  /**
   * Removes a job that is not running; false when it was picked up (locked) in the meantime. Its
   * children stay (a cancelled flow parent's are cancelled one by one, and recorded); a child taken
   * out leaves its parent's dependencies, as BullMQ's removeDependencyOnFailure does.
   */
  private async tryRemove(job: Job): Promise<boolean> {
    try {
      await job.remove({ removeChildren: false });
      return true;
    } catch {
      return false;
    }
  }

  private async waitForEnd(queueName: string, id: string): Promise<JobView> {
    const deadline = Date.now() + this.options.cancelWaitMs;
    for (;;) {
      const view = await this.jobs.getJob(queueName, id);
      if (!view) throw new NotFoundError(`No job "${id}" in queue "${queueName}"`);
      if (TERMINAL_STATES.has(view.state) || Date.now() >= deadline) return view;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** A FAILED or CANCELLED job still held by the queue goes back to WAITING with a fresh set of attempts. */
  async retry(queueName: string, id: string, actor: Actor, options: PerJobOptions = {}): Promise<JobView> {
    const found = await this.liveJob(queueName, id);
    if (!found.job) {
      if (found.known) {
        throw new InvalidStateError(
          `Job "${id}" (${found.known.state}) is no longer held by the queue, so it cannot be retried: use replayJob`,
          found.known.state,
        );
      }
      throw new NotFoundError(`No job "${id}" in queue "${queueName}"`);
    }
    const { job, state } = found;
    if (!RETRYABLE_STATES.has(state))
      throw new InvalidStateError(`Only FAILED or CANCELLED jobs can be retried; job "${id}" is ${state}`, state);
    const failedAt = failureTime(job);
    const view = await this.retryOne(job);
    await this.inbox?.resolveJobs([{ queue: queueName, id, upTo: failedAt }], "RETRIED", actorName(actor));
    if (options.audit !== false)
      await this.actions.record({ actor, action: "retryJob", queue: queueName, jobId: id, details: { previousState: state } });
    return view;
  }

  private async retryOne(job: Job): Promise<JobView> {
    await clearCancelMark(this.redis, this.queues.space, job.queueName, String(job.id));
    await job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
    const view = (await this.jobs.getLive(job.queueName, String(job.id))) ?? { ...viewFromBull(job, "WAITING") };
    // The row starts over too; the earlier final failure keeps its audit row.
    await this.history.upsert({ ...view, attemptsMade: 0, startedAt: null, finishedAt: null, failedReason: null, result: null });
    return view;
  }

  /**
   * Every FAILED job of the queue (cancelled ones excluded), at most `limit`, goes back to WAITING.
   * With `tenant`, only that tenant's failed jobs.
   */
  async retryFailed(queueName: string, limit: number, actor: Actor, tenant: string | null = null): Promise<number> {
    const queue = this.queueOrThrow(queueName);
    if (!Number.isInteger(limit) || limit < 1 || limit > this.options.maxBulkRetry) {
      throw ValidationError.at(["limit"], `must be an integer from 1 to ${this.options.maxBulkRetry}`);
    }
    const picked: Job[] = [];
    for (let start = 0; picked.length < limit; start += 500) {
      const page = (await queue.getFailed(start, start + 499)) as Job[];
      const cancelled = await this.queues.whichCancelled(page);
      for (const [i, job] of page.entries()) {
        if (picked.length >= limit || cancelled[i]) continue;
        if (tenant === null || splitData(job.data).meta.tenant === tenant) picked.push(job);
      }
      if (page.length < 500) break;
    }
    let count = 0;
    for (let i = 0; i < picked.length; i += 50) {
      const chunk = picked.slice(i, i + 50);
      // Read before the retry resets them.
      const failedAt = chunk.map(failureTime);
      const results = await Promise.allSettled(chunk.map((job) => this.retryOne(job)));
      const retried = chunk.flatMap((job, k) =>
        results[k]?.status === "fulfilled" ? [{ queue: queueName, id: String(job.id), upTo: failedAt[k] }] : [],
      );
      await this.inbox?.resolveJobs(retried, "RETRIED", actorName(actor));
      count += retried.length;
    }
    await this.actions.record({ actor, action: "retryFailedJobs", queue: queueName, details: { limit, count } });
    return count;
  }

  /**
   * Enqueues a NEW job with the original's name, attempts, backoff and priority (never its delay or
   * id), read from Redis or, once the original has left it, from history. `data` replaces the
   * payload; `dataPatch` is an RFC 7386 merge patch over it; the result is validated again.
   */
  async replay(
    queueName: string,
    id: string,
    data: unknown,
    dataPatch: unknown,
    actor: Actor,
    perJob: PerJobOptions = {},
  ): Promise<JobView> {
    this.queueOrThrow(queueName);
    if (data !== undefined && dataPatch !== undefined) {
      throw ValidationError.at(["dataPatch"], "give either data or dataPatch, not both");
    }
    const live = await this.queueOrThrow(queueName).getJob(id);
    let original: JobView | null;
    let options: { attempts: number; backoff: EnqueueInput["backoff"]; priority: number };
    // From Redis the payload is the real one (secret values included); from history, secret values
    // are "[redacted]" and come back from their encrypted copy (PAYLOAD_ENCRYPTION_KEYS), else must
    // be given again in `data` / `dataPatch`: a replay never runs with a masked value.
    let realData: unknown;
    let unrestored: string | null = null;
    if (live) {
      original = viewFromBull(live, "COMPLETED");
      realData = splitData(live.data).data;
      options = { attempts: live.opts.attempts ?? 1, backoff: backoffInput(live.opts.backoff), priority: live.opts.priority ?? 0 };
    } else {
      original = await this.history.get(queueName, id);
      realData = original?.data;
      if (original && this.jobs.secrets && data === undefined) {
        const restored = (await this.jobs.secrets.restore(queueName, [original])).get(original.id);
        realData = restored?.data ?? realData;
        unrestored = restored?.reason ?? null;
      }
      const stored = original ? await this.history.options(queueName, id) : null;
      options = { attempts: stored?.attempts ?? 1, backoff: backoffInput(stored?.backoff), priority: stored?.priority ?? 0 };
    }
    if (!original) throw new NotFoundError(`No job "${id}" in queue "${queueName}"`);
    const payload = data !== undefined ? data : dataPatch !== undefined ? applyMergePatch(realData, dataPatch) : realData;
    const issues: ValidationIssue[] = maskedPaths(payload, this.jobs.secretPaths(queueName, original.name)).map((path) => ({
      path: ["data", ...path.split(".")],
      message: `is a secret field that history keeps masked and ${unrestored ?? UNSENDABLE}; give it again in data or dataPatch`,
    }));
    // A flow parent replays with its whole tree: new ids, each new job a replay of its original, and
    // each with its real payload, read as the root's is (all or nothing: one node still masked and
    // nothing is enqueued).
    const tree = await this.history.descendants(queueName, id, this.options.maxFlowNodes ?? 1000);
    const real = tree.length > 0 ? await this.realPayloads(tree) : new Map<string, RealPayload>();
    const flow = tree.length > 0 ? replayTree({ queue: queueName, id }, tree, real) : null;
    for (const row of tree) {
      const node = real.get(nodeKey(row.queue, row.id));
      const at = flow?.paths.get(nodeKey(row.queue, row.id));
      if (!node || !at) continue;
      for (const path of maskedPaths(node.data, this.jobs.secretPaths(row.queue, row.name))) {
        issues.push({
          path: [...at, "data", ...path.split(".")],
          message:
            `is a secret field of ${row.queue} job "${row.id}" (in the tree under the replayed job) that history keeps masked and ` +
            `${node.reason ?? UNSENDABLE}; a tree replay cannot take it again: enqueue the flow anew (enqueueFlow), or replay that job on its own with data or dataPatch`,
        });
      }
    }
    if (issues.length > 0) throw ValidationError.of(issues);
    const input: EnqueueInput = {
      queue: queueName,
      name: original.name,
      data: payload,
      attempts: options.attempts,
      backoff: options.backoff,
      priority: options.priority > 0 ? options.priority : null,
      jobId: perJob.jobId ?? null,
    };
    const tenantMeta = original.tenant ? { tenant: original.tenant } : {};
    const replay =
      flow && flow.children.length > 0
        ? ((await this.jobs.enqueueFlow({ ...input, replayOf: id, children: flow.children }, tenantMeta))[0] as JobView)
        : await this.jobs.enqueue(input, { replayOf: id, ...tenantMeta });
    await this.inbox?.resolveJobs([{ queue: queueName, id }], "REPLAYED", actorName(actor));
    if (perJob.audit === false) return replay;
    await this.actions.record({
      actor,
      action: "replayJob",
      queue: queueName,
      jobId: id,
      details: {
        replayJobId: replay.id,
        ...(tree.length > 0 ? { replayedChildren: tree.length } : {}),
        ...(data !== undefined ? { data: this.jobs.redacted(queueName, original.name, data) } : {}),
        ...(dataPatch !== undefined ? { dataPatch: this.jobs.redacted(queueName, original.name, dataPatch) } : {}),
      },
    });
    return replay;
  }

  /**
   * The real payloads of a flow's descendants, each read as a single-job replay reads its original:
   * from Redis while it holds the job (the real values), else from history with its secret values put
   * back from their sealed copy (PayloadSecrets.restore, one query per queue). A payload that still
   * has masked values carries the reason. Only jobs whose history row has masked values are looked up.
   */
  private async realPayloads(rows: readonly FlowRow[]): Promise<Map<string, RealPayload>> {
    const out = new Map<string, RealPayload>();
    const masked: FlowRow[] = [];
    for (const row of rows) {
      out.set(nodeKey(row.queue, row.id), { data: row.data, reason: null });
      if (maskedPaths(row.data, this.jobs.secretPaths(row.queue, row.name)).length > 0) masked.push(row);
    }
    const fromHistory = new Map<string, FlowRow[]>();
    for (let i = 0; i < masked.length; i += 25) {
      await Promise.all(
        masked.slice(i, i + 25).map(async (row) => {
          const live = await this.queues.get(row.queue)?.getJob(row.id);
          if (live) out.set(nodeKey(row.queue, row.id), { data: splitData(live.data).data, reason: null });
          else fromHistory.set(row.queue, [...(fromHistory.get(row.queue) ?? []), row]);
        }),
      );
    }
    const secrets = this.jobs.secrets;
    if (!secrets) return out;
    for (const [queue, group] of fromHistory) {
      const restored = await secrets.restore(queue, group);
      for (const row of group) {
        const r = restored.get(row.id);
        if (r) out.set(nodeKey(queue, row.id), { data: r.data, reason: r.reason });
      }
    }
    return out;
  }
}

/** Why a masked value is not replayed when nothing better is known. */
const UNSENDABLE = `"${REDACTED}" is not a value it can be sent with`;

/** A descendant's payload for its replay, and why it still has masked secret values (null: none, or no reason known). */
interface RealPayload {
  data: unknown;
  reason: string | null;
}

const nodeKey = (queue: string, id: string) => `${queue}\u0000${id}`;

/**
 * The children that replay a flow's root (`root`: the original's queue and id): the descendants
 * history holds, each with its name, its real payload (`real`, see JobControl.realPayloads; history's
 * own data where it has none), attempts, backoff, priority and parent policy, and `replayOf` its
 * original; and where each sits in the new tree (`["children", "1", "children", "0"]`), by
 * `<queue>\u0000<id>` of its original, for the issues that name it.
 */
function replayTree(
  root: { queue: string; id: string },
  rows: readonly FlowRow[],
  real: ReadonlyMap<string, RealPayload>,
): { children: FlowNodeInput[]; paths: Map<string, string[]> } {
  const nodes = new Map<string, { children: FlowNodeInput[] }>();
  const paths = new Map<string, string[]>();
  const top = { children: [] as FlowNodeInput[] };
  nodes.set(nodeKey(root.queue, root.id), top);
  paths.set(nodeKey(root.queue, root.id), []);
  // Parents come before their children (rows are ordered by level).
  for (const row of rows) {
    const policy = PARENT_POLICIES.find((p) => p === row.parentPolicy);
    const key = nodeKey(row.queue, row.id);
    const node = {
      queue: row.queue,
      name: row.name,
      data: real.get(key)?.data ?? row.data,
      attempts: row.attempts,
      backoff: backoffInput(row.backoff),
      priority: row.priority > 0 ? row.priority : null,
      replayOf: row.id,
      ...(policy ? { [policy]: true } : {}),
      children: [] as FlowNodeInput[],
    };
    const parentKey = nodeKey(row.parentQueue, row.parentId);
    const parent = nodes.get(parentKey);
    const parentPath = paths.get(parentKey);
    if (!parent || !parentPath) continue;
    paths.set(key, [...parentPath, "children", String(parent.children.push(node) - 1)]);
    nodes.set(key, node);
  }
  // Recursion as deep as the tree (at most 64 levels: history.descendants stops there).
  const prune = (n: FlowNodeInput): FlowNodeInput =>
    n.children && n.children.length > 0 ? { ...n, children: n.children.map(prune) } : { ...n, children: null };
  return { children: top.children.map(prune), paths };
}
