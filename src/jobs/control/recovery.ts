import { randomUUID } from "node:crypto";
import type { Logger } from "../../infra/logger.ts";
import type { RedisClient } from "../../infra/redis.ts";
import { keys } from "../bullmq/keys.ts";
import type { QueueSet } from "../bullmq/queue-set.ts";
import { type DurableRecords, PENDING_STATES, type PendingCursor, type PendingRow, type Recovery } from "../history/durable-records.ts";
import type { HistoryStore } from "../history/history-store.ts";
import { type JobMeta, type JobState, type JobView, META_KEY } from "../job-view.ts";
import type { PayloadSecrets, Restored } from "./payload-secrets.ts";

export interface RecoveryOptions {
  /** Time between periodic passes (0: only at start and after Redis lost data). */
  intervalMs: number;
  /** How often this instance checks whether Redis lost its data (the epoch key) or restarted (`run_id`). */
  watchMs: number;
  /** Rows younger than this are left alone: their enqueue may still be adding the job. */
  graceMs: number;
  /** The pass' lease across API instances; renewed while the pass runs. */
  leaseMs: number;
  /** Rows checked against Redis per step (one page of history, one pipeline to Redis). */
  pageSize?: number;
  /** Most rows a pass checks per second (0: no limit). */
  rowsPerSecond?: number;
}

export interface RecoveryPass {
  passId: string;
  why: string;
  /** Non-final rows compared with Redis. */
  checked: number;
  /** Jobs put back into Redis. */
  recovered: number;
  /** Missing jobs left alone because a worker's ledger holds their final record. */
  inLedger: number;
  /**
   * Missing jobs not re-added because a secret payload field could not be restored (no
   * PAYLOAD_ENCRYPTION_KEYS, no encrypted copy, or it did not decrypt): their rows are marked FAILED
   * and an operator action NOT_RECOVERED says why. Re-adding them would run them with "[redacted]".
   */
  notRecovered: number;
  ms: number;
  /** Where the pass' time went, in ms: paging history, asking Redis, reading rows, rows back to pending, re-adding, recording. */
  phases: { page: number; redis: number; rows: number; rowsBack: number; readd: number; record: number };
}

const RETRY_AFTER_FAILURE_MS = 5_000;

/**
 * The pace of one pass, so a pass over a large backlog barely moves the API's latency (it runs on the
 * API's event loop, its PostgreSQL pool and Redis): after each step it sleeps long enough that the
 * pass checks at most `rowsPerSecond` rows a second on average (0: no limit), and after a step that
 * found nothing lost at least as long as the step took (at most half of the time busy, however slow
 * the machine). A step that re-added jobs is not held back further: lost jobs are an incident, and
 * getting them running again comes first.
 */
class Pace {
  private readonly start = performance.now();
  private rows = 0;
  private readonly rowsPerSecond: number;

  constructor(rowsPerSecond: number) {
    this.rowsPerSecond = rowsPerSecond;
  }

  /** Waits after a step that handled `rows` rows in `busyMs` (0: a step that re-added jobs). */
  async after(rows: number, busyMs: number): Promise<void> {
    this.rows += rows;
    const behind = this.rowsPerSecond > 0 ? (this.rows / this.rowsPerSecond) * 1000 - (performance.now() - this.start) : 0;
    const ms = Math.max(behind, busyMs);
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** Renews the lease only while it is still ours. */
const RENEW = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`;
/** Deletes the lease only if it is still ours. (#13 folds the lease copies into bullmq/lease.ts.) */
const RELEASE = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`;

/**
 * The recovery reconciler (durable enqueue, issue #18): PostgreSQL is the record, so when Redis
 * loses jobs (a restart without persistence, a failover to a replica that lagged, a FLUSHALL) this
 * puts them back. A pass walks every queue's history rows in a pending state (WAITING, PRIORITIZED,
 * DELAYED, ACTIVE) older than `graceMs`, asks Redis which of those jobs it no longer has, and re-adds
 * them with their id, name, data, options, what remains of their delay and the attempts they had
 * made; each is recorded in `job_recovery` and as an operator action `RECOVERED`. A job missing from
 * Redis whose final record waits in a worker's ledger (`<queue>:ledger:pending`) finished and is left
 * to the ledger.
 *
 * One pass at a time across all API instances (a Redis lease). A pass runs at start, when Redis lost
 * its data (the epoch key this writes after each pass is gone) or restarted (a new `run_id`), then
 * once more `graceMs` later (for jobs enqueued just before), and every `intervalMs`. A pass is paced
 * (`pageSize` rows a step, at most `rowsPerSecond` a second, at most half of the time busy while it
 * finds nothing lost: see Pace) so
 * it barely moves the latency of the requests it shares the process with.
 */
export class RecoveryReconciler {
  private readonly redis: RedisClient;
  private readonly queues: QueueSet;
  private readonly queueNames: string[];
  private readonly records: DurableRecords;
  private readonly history: HistoryStore;
  private readonly log: Logger;
  private readonly options: Required<RecoveryOptions>;
  private readonly onPass: (pass: RecoveryPass, perQueue: Map<string, number>, notRecovered: Map<string, number>) => void;
  private readonly secrets: PayloadSecrets | null;
  private readonly timers = new Set<NodeJS.Timeout>();
  private running: Promise<RecoveryPass | null> | null = null;
  private again: string | null = null;
  private runId: string | null = null;
  private stopped = false;
  /** After a failed pass (PostgreSQL or Redis down), the watcher waits until then before it tries again. */
  private retryAt = 0;
  private readonly onReady = () => void this.checkRunId();

  constructor(deps: {
    redis: RedisClient;
    queues: QueueSet;
    queueNames: string[];
    records: DurableRecords;
    history: HistoryStore;
    log: Logger;
    options: RecoveryOptions;
    /** Called after every pass that ran (metrics): jobs re-added and jobs not re-added (secrets lost), by queue. */
    onPass?: (pass: RecoveryPass, perQueue: Map<string, number>, notRecovered: Map<string, number>) => void;
    /** Puts secret payload fields back from their encrypted copies (without it, no job type is taken to have any). */
    secrets?: PayloadSecrets | undefined;
  }) {
    this.redis = deps.redis;
    this.queues = deps.queues;
    this.queueNames = deps.queueNames;
    this.records = deps.records;
    this.history = deps.history;
    this.log = deps.log;
    this.options = { pageSize: 200, rowsPerSecond: 4_000, ...deps.options };
    this.onPass = deps.onPass ?? (() => {});
    this.secrets = deps.secrets ?? null;
  }

  /** Per queue (per-queue layout): a cluster shard that lost its data loses the epochs of its queues only. */
  private epochKey(queue: string): string {
    return keys.recoveryEpoch(this.queues.space, queue);
  }

  private get leaseKey(): string {
    return keys.recoveryLease(this.queues.space);
  }

  start(): void {
    this.trigger("start");
    this.every(this.options.watchMs, () => this.watch());
    if (this.options.intervalMs > 0) this.every(this.options.intervalMs, () => this.trigger("periodic"));
    this.redis.on("ready", this.onReady);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.redis.off("ready", this.onReady);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.running?.catch(() => null);
  }

  private every(ms: number, run: () => void): void {
    const timer = setInterval(run, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      run();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  /** Starts a pass now, or right after the one running. */
  trigger(why: string): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = this.again ?? why;
      return;
    }
    this.running = this.runOnce(why)
      .catch((err) => {
        this.retryAt = Date.now() + RETRY_AFTER_FAILURE_MS;
        this.log.warn("recovery pass failed; retrying in 5 s or at the next trigger", {
          why,
          err: err instanceof Error ? err.message : String(err),
        });
        return null;
      })
      .finally(() => {
        this.running = null;
        const next = this.again;
        this.again = null;
        if (next) this.trigger(next);
      });
  }

  /** An epoch key is gone: Redis (or the shard holding that queue) lost its data since the last pass. */
  private async watch(): Promise<void> {
    if (this.running || Date.now() < this.retryAt) return;
    try {
      // One EXISTS per distinct key, not one multi-key command: on a cluster the keys are on different shards.
      const epochs = [...new Set(this.queueNames.map((q) => this.epochKey(q)))];
      const present = await Promise.all(epochs.map((key) => this.redis.exists(key)));
      if (present.includes(0)) this.triggerWithFollowUp("redis has no recovery epoch (data lost)");
    } catch {
      // Redis is down: the next tick (or the reconnect) looks again.
    }
  }

  private async checkRunId(): Promise<void> {
    try {
      const runId = await this.currentRunId();
      if (this.runId !== null && runId !== this.runId) this.triggerWithFollowUp(`redis restarted (run_id ${runId})`);
      this.runId = runId;
    } catch {
      // The next reconnect or watch tick looks again.
    }
  }

  private triggerWithFollowUp(why: string): void {
    this.trigger(why);
    // Jobs enqueued within the grace period before the loss are only old enough a little later.
    this.later(Math.min(this.options.graceMs + 100, 2_147_483_647), () => this.trigger(`${why}, follow-up`));
  }

  private async currentRunId(): Promise<string> {
    const info = (await this.redis.info("server")) as string;
    return /run_id:(\w+)/.exec(info)?.[1] ?? "unknown";
  }

  /**
   * One pass over every queue, under the lease; null when another instance holds it. Throws when
   * PostgreSQL or Redis fails (the next trigger retries; jobs already re-added stay, and are found
   * present next time).
   */
  async runOnce(why = "manual"): Promise<RecoveryPass | null> {
    const token = randomUUID();
    if ((await this.redis.set(this.leaseKey, token, "PX", this.options.leaseMs, "NX")) !== "OK") return null;
    const renew = setInterval(
      () => void this.redis.eval(RENEW, 1, this.leaseKey, token, this.options.leaseMs).catch(() => {}),
      this.options.leaseMs / 3,
    );
    const started = Date.now();
    const pass: RecoveryPass = {
      passId: randomUUID(),
      why,
      checked: 0,
      recovered: 0,
      inLedger: 0,
      notRecovered: 0,
      ms: 0,
      phases: { page: 0, redis: 0, rows: 0, rowsBack: 0, readd: 0, record: 0 },
    };
    const perQueue = new Map<string, number>();
    const notRecovered = new Map<string, number>();
    try {
      const runId = await this.currentRunId();
      const before = new Date(started - this.options.graceMs);
      const pace = new Pace(this.options.rowsPerSecond);
      for (const queue of this.queueNames) {
        const notBefore = pass.notRecovered;
        const recovered = await this.recoverQueue(queue, before, runId, pass, pace);
        perQueue.set(queue, recovered);
        notRecovered.set(queue, pass.notRecovered - notBefore);
        pass.recovered += recovered;
        await this.redis.set(this.epochKey(queue), runId);
      }
      this.runId = runId;
      pass.ms = Date.now() - started;
      this.onPass(pass, perQueue, notRecovered);
      for (const k of Object.keys(pass.phases) as (keyof RecoveryPass["phases"])[]) pass.phases[k] = Math.round(pass.phases[k]);
      if (pass.recovered > 0 || pass.inLedger > 0 || pass.notRecovered > 0)
        this.log.warn("recovery pass re-added jobs Redis had lost", { ...pass });
      else this.log.debug("recovery pass", { ...pass });
      return pass;
    } finally {
      clearInterval(renew);
      await this.redis.eval(RELEASE, 1, this.leaseKey, token).catch(() => {});
    }
  }

  private async recoverQueue(queue: string, before: Date, runId: string, pass: RecoveryPass, pace: Pace): Promise<number> {
    let recovered = 0;
    let ledger: Set<string> | null = null;
    for (const state of PENDING_STATES) {
      let cursor: PendingCursor | null = null;
      for (;;) {
        const pageStart = performance.now();
        let t = pageStart;
        const page = await this.records.pendingIds(queue, state, before, cursor, this.options.pageSize);
        pass.phases.page += performance.now() - t;
        if (page.length === 0) break;
        cursor = page[page.length - 1] as PendingCursor;
        pass.checked += page.length;
        t = performance.now();
        const missing = await this.missingFromRedis(
          queue,
          page.map((p) => p.id),
        );
        pass.phases.redis += performance.now() - t;
        if (missing.length > 0) {
          ledger ??= await this.ledgerIds(queue);
          const lost = missing.filter((id) => !ledger?.has(id));
          pass.inLedger += missing.length - lost.length;
          t = performance.now();
          const rows = await this.records.pendingRows(queue, lost);
          pass.phases.rows += performance.now() - t;
          recovered += await this.readd(queue, rows, runId, pass);
        }
        await pace.after(page.length, missing.length > 0 ? 0 : performance.now() - pageStart);
      }
    }
    return recovered;
  }

  /** The ids of `ids` whose job hash Redis does not have. */
  private async missingFromRedis(queue: string, ids: string[]): Promise<string[]> {
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.exists(keys.job(this.queues.space, queue, id));
    const results = (await pipeline.exec()) ?? [];
    const missing: string[] = [];
    for (const [i, [err, exists]] of results.entries()) {
      if (err) throw err;
      if (exists === 0) missing.push(ids[i] as string);
    }
    return missing;
  }

  /** Jobs whose final record a worker keeps in Redis until PostgreSQL takes it (workers/ledger.ts: fields are `<id>:<finishedOn>`). */
  private async ledgerIds(queue: string): Promise<Set<string>> {
    const fields = await this.redis.hkeys(keys.ledgerPending(this.queues.space, queue));
    return new Set(fields.map((f) => f.slice(0, f.lastIndexOf(":"))));
  }

  /** Puts the rows' jobs back into Redis (one addBulk), then their attempts, history state and records. */
  /**
   * Jobs whose secret values cannot be restored are not re-added: their rows become FAILED with the
   * reason, and the operator audit gets a NOT_RECOVERED action each. The metric counts them.
   */
  private async markNotRecovered(queue: string, rows: PendingRow[], restored: Map<string, Restored>, pass: RecoveryPass): Promise<void> {
    const now = new Date();
    const failures = rows.map((row) => {
      const r = restored.get(row.id);
      const paths = r?.masked ?? [];
      const reason = `Not recovered after Redis lost it: its secret payload fields (${paths.join(", ")}) are masked in history and ${r?.reason ?? "could not be restored"}; replay it giving them again`;
      return { row, paths, reason };
    });
    await Promise.all(
      failures.map(({ row, reason }) =>
        this.history.upsert({ ...recoveredView(row, "FAILED"), attemptsMade: row.attemptsMade, finishedAt: now, failedReason: reason }),
      ),
    );
    await this.records.recordNotRecovered(
      failures.map(({ row, paths, reason }) => ({ queue, jobId: row.id, state: row.state, paths, reason, passId: pass.passId })),
    );
    pass.notRecovered += rows.length;
    this.log.warn("recovery left jobs out: their secret payload fields could not be restored", {
      queue,
      jobIds: rows.map((r) => r.id).slice(0, 20),
      reason: failures[0]?.reason,
    });
  }

  private async readd(queue: string, rows: PendingRow[], runId: string, pass: RecoveryPass): Promise<number> {
    const t = performance.now();
    const bull = this.queues.get(queue);
    if (!bull || rows.length === 0) return 0;
    // Secret payload fields: history holds them masked; their encrypted copies put them back.
    const restored = this.secrets ? await this.secrets.restore(queue, rows) : new Map<string, Restored>();
    const unrestorable = rows.filter((row) => (restored.get(row.id)?.masked.length ?? 0) > 0);
    if (unrestorable.length > 0) {
      await this.markNotRecovered(queue, unrestorable, restored, pass);
      rows = rows.filter((row) => !unrestorable.includes(row));
      if (rows.length === 0) return 0;
    }
    const now = Date.now();
    const plans = rows.map((row) => {
      const due = row.createdAt.getTime() + row.delayMs;
      const delayed = row.delayMs > 0 && due > now;
      const secret = this.secrets?.pathsOf(queue, row.name) ?? [];
      const meta: JobMeta = {
        ...(row.replayOfId ? { replayOf: row.replayOfId } : {}),
        ...(row.tenant ? { tenant: row.tenant } : {}),
        // So every view of the re-added job masks them again, as at enqueue.
        ...(secret.length > 0 ? { secret } : {}),
      };
      const real = restored.get(row.id)?.data ?? row.data;
      const data = Object.keys(meta).length > 0 ? { ...(real as object), [META_KEY]: meta } : real;
      const state: JobState = delayed ? "DELAYED" : row.priority > 0 ? "PRIORITIZED" : "WAITING";
      return { row, data, state, remainingMs: delayed ? due - now : 0, delayed };
    });
    // Row first (as at enqueue): a worker that finishes the job at once then writes after us.
    await Promise.all(plans.map((p) => this.history.upsert(recoveredView(p.row, p.state))));
    const t1 = performance.now();
    pass.phases.rowsBack += t1 - t;
    await bull.addBulk(
      plans.map((p) => ({
        name: p.row.name,
        data: p.data,
        opts: {
          jobId: p.row.id,
          // BullMQ schedules a delayed job at timestamp + delay: the original creation time and delay
          // keep the original due time.
          timestamp: p.row.createdAt.getTime(),
          delay: p.delayed ? p.row.delayMs : undefined,
          priority: p.row.priority > 0 ? p.row.priority : undefined,
          attempts: p.row.maxAttempts,
          backoff: (p.row.backoff ?? undefined) as { type: string; delay: number } | undefined,
        },
      })),
    );
    // Attempts already made count against the job's attempts (HINCRBY: a worker's own increment,
    // should it finish an attempt first, adds to it rather than being overwritten).
    const pipeline = this.redis.pipeline();
    let incr = 0;
    for (const p of plans) {
      if (p.row.attemptsMade > 0) {
        pipeline.hincrby(keys.job(this.queues.space, queue, p.row.id), "atm", p.row.attemptsMade);
        incr++;
      }
    }
    if (incr > 0) await pipeline.exec();
    const recoveries: Recovery[] = plans.map((p) => ({
      queue,
      jobId: p.row.id,
      state: p.row.state,
      attemptsMade: p.row.attemptsMade,
      delayMs: p.remainingMs,
      redisRunId: runId,
      passId: pass.passId,
    }));
    const t2 = performance.now();
    pass.phases.readd += t2 - t1;
    await this.records.recordRecoveries(recoveries);
    pass.phases.record += performance.now() - t2;
    return plans.length;
  }
}

/** The row of a re-added job: pending again in the state it was re-added in, nothing of a run kept. */
function recoveredView(row: PendingRow, state: JobState): JobView {
  return {
    id: row.id,
    queue: row.queue,
    name: row.name,
    data: row.data,
    state,
    progress: null,
    attemptsMade: row.attemptsMade,
    maxAttempts: row.maxAttempts,
    priority: row.priority,
    createdAt: row.createdAt,
    startedAt: null,
    finishedAt: null,
    result: null,
    failedReason: null,
    replayOfId: row.replayOfId,
    tenant: row.tenant,
    // Unknown here; the upsert keeps the row's own (a job's parent never changes).
    parentQueue: null,
    parentId: null,
  };
}
