import { type Queue, Worker } from "bullmq";
import { type Config, ConfigError } from "../src/config.ts";
import { runReadyChecks } from "../src/infra/health-server.ts";
import type { Logger } from "../src/infra/logger.ts";
import { createPrisma, poolOf } from "../src/infra/prisma.ts";
import { bullConnection, closeRedis, createRedis } from "../src/infra/redis.ts";
import type { Tracing } from "../src/infra/tracing.ts";
import {
  appendChildEvent,
  keySpace,
  layoutProblems,
  QueueSet,
  queuePrefix,
  queuesLeftInOtherLayout,
  syncDeclaredSchedulers,
} from "../src/jobs/bullmq/index.ts";
import { HistoryQuarantine, HistoryRetention, HistoryStore, JobLogStore, retentionLockKey } from "../src/jobs/history/index.ts";
import { loadJobTypes } from "../src/jobs/jobs-module.ts";
import { type CancelListener, listenForCancellations } from "./cancel-listener.ts";
import { declaredSchedules } from "./declared-schedules.ts";
import { jobLogger } from "./job-logs.ts";
import { Ledger } from "./ledger.ts";
import { LedgerReconciler } from "./ledger-reconciler.ts";
import { Lifecycle, workerId } from "./lifecycle.ts";
import { checkProcessors, type Processor } from "./processor.ts";
import { processors as allProcessors } from "./processors/index.ts";
import { type QueueSettings, resolveQueueSettings } from "./queue-settings.ts";
import { type RunJobOptions, RunningJobs, runJob } from "./run-job.ts";
import { startStatsFolder } from "./stats-folder.ts";
import { WorkerMetrics } from "./worker-metrics.ts";

export interface WorkerRuntime {
  queues: string[];
  /** What each served queue runs with (concurrency, rate limit). */
  settings: QueueSettings[];
  workers: Worker[];
  metrics: WorkerMetrics;
  ledger: Ledger;
  ready(): Promise<{ ok: boolean; checks: Record<string, string> }>;
  /** Stops taking jobs and waits for active ones (up to the grace period), then closes everything. */
  stop(): Promise<void>;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * One BullMQ Worker per served queue (WORKER_QUEUES, default all registered). Each job's payload is
 * parsed again with its definition's schema before the processor runs; a payload that does not match
 * fails at once, without retries. Throws a ConfigError (before connecting anything) when
 * WORKER_QUEUES or a per-queue variable names an unknown queue, or JOBS_MODULE is wrong.
 */
export async function createWorkerRuntime(
  config: Config,
  log: Logger,
  builtIn: Processor[] = allProcessors,
  /** BullMQ's telemetry (tracing on): each job runs in a CONSUMER span, child of its enqueue's. */
  telemetry?: Tracing["telemetry"],
): Promise<WorkerRuntime> {
  // The jobs module (JOBS_MODULE): its definitions join the registry, its processors these.
  const { registry, module: jobsModule } = await loadJobTypes({ demoQueue: config.demoQueue, jobsModule: config.jobsModule });
  const processors = [...builtIn, ...checkProcessors(await jobsModule.processors(), registry, jobsModule.source ?? "")];
  const settings = resolveQueueSettings(config, registry);
  const queueNames = settings.map((s) => s.queue);
  // Checked before connecting anything: a bad declared schedule stops the worker at start, naming it.
  const declared = declaredSchedules(processors, queueNames);
  const db = createPrisma(config.databaseUrl, { max: 5 });
  // Ledger and reconciler commands must wait out a Redis restart rather than fail (records would
  // otherwise stay only in this process' memory): no per-request retry limit.
  const redis = createRedis(config, "blocking");
  redis.on("error", (err) => log.debug("redis connection error", { err: err.message }));
  const space = keySpace(config.queuePrefix, config.redisKeyLayout);
  // Jobs left under the other key layout would never run here: refuse to start (README: Key layout).
  const stranded = layoutProblems(space, await queuesLeftInOtherLayout(redis, space, queueNames));
  if (stranded.length > 0) {
    redis.disconnect();
    await db.$disconnect();
    throw new ConfigError(stranded);
  }
  const quarantine = new HistoryQuarantine(poolOf(db), redis, space, (err) =>
    log.error("could not quarantine a row PostgreSQL refused", { err: describe(err) }),
  );
  // Terminal writes wait for nobody: gather up to 10 ms for batches of 200 (fewer commits per row).
  const history = new HistoryStore(db, { lingerMs: 10, minBatch: 200, concurrency: 1 }, quarantine);
  const ledger = new Ledger(redis, space, history, db, log, { lingerMs: 10, minBatch: 200, concurrency: 1 }, quarantine);
  const metrics = new WorkerMetrics(
    queueNames,
    (queue) => ledger.backlog(queue),
    (queue) => ledger.quarantined(queue),
  );
  const lifecycle = new Lifecycle(history, ledger, log, metrics);
  const queueSet = new QueueSet(registry, redis, space, config.eventsMaxLen);
  const queues = queueNames.map((q) => queueSet.get(q)).filter((q): q is Queue => q !== undefined);
  const reconciler = new LedgerReconciler(ledger, redis, queues, db, log, {
    intervalMs: config.ledgerReconcileMs,
    lookbackMs: config.ledgerLookbackMs,
    workerId,
  });
  const workers: Worker[] = [];
  let cancelListener: CancelListener | undefined;
  const connection = bullConnection(config);
  const probe = createRedis(config, "request");
  probe.on("error", () => {});

  // The attempts running here, for cancel requests (run-job.ts).
  const running = new RunningJobs();
  const runOptions: RunJobOptions = {
    running,
    cancelRequested: (q, id) => cancelListener?.requested(q, id),
    cancelGraceMs: config.cancelGraceMs,
    services: { config, db },
    log: jobLogger({
      store: new JobLogStore(db, { lingerMs: 10, minBatch: 50, concurrency: 1 }),
      redis,
      eventsKey: (queue) => queueSet.eventsKey(queue),
      eventsMaxLen: config.eventsMaxLen,
      log,
    }),
    // A flow child tells its parent's jobEvents (CHILD_COMPLETED / CHILD_FAILED, with the counts).
    tellParent: (job, outcome) =>
      appendChildEvent(redis, config.eventsMaxLen, job, outcome).catch((err) =>
        log.warn("could not append a child event to its parent's stream", { queue: job.queueName, jobId: job.id, err: describe(err) }),
      ),
    queueTimeoutMs: Object.fromEntries(settings.flatMap((s) => (s.timeoutMs ? [[s.queue, s.timeoutMs]] : []))),
  };
  for (const { queue, concurrency, rateLimit } of settings) {
    const byName = new Map<string, Processor>();
    for (const p of processors) if (p.definition.queue === queue) byName.set(p.definition.name, p);

    // One argument: BullMQ makes no AbortController per job (it does for a processor taking a signal);
    // cancels reach the job through `running`, and its signal exists only if the processor reads it.
    const worker = new Worker(queue, (job) => runJob(job, undefined, byName.get(job.name), runOptions), {
      connection,
      prefix: queuePrefix(space, queue),
      concurrency,
      limiter: rateLimit ? { max: rateLimit.max, duration: rateLimit.durationMs } : undefined,
      lockDuration: config.lockDurationMs,
      stalledInterval: config.stalledIntervalMs,
      maxStalledCount: config.maxStalledCount,
      autorun: false,
      ...(telemetry ? { telemetry } : {}),
    });
    worker.on("active", (job) => lifecycle.active(job));
    worker.on("progress", (job) => lifecycle.progress(job));
    worker.on("completed", (job) => lifecycle.completed(job));
    worker.on("failed", (job) => {
      if (job) lifecycle.failed(job);
    });
    worker.on("stalled", (jobId) => {
      metrics.onStalled(queue);
      log.warn("job stalled (its worker stopped renewing the lock); moved back to wait", { queue, jobId });
    });
    worker.on("error", (err) => log.warn("worker error", { queue, err: describe(err) }));
    workers.push(worker);
  }

  // cancelJob on an active job reaches whichever worker process runs it through this channel.
  const cancelSubscriber = createRedis(config, "subscriber");
  cancelSubscriber.on("error", (err) => log.debug("cancel listener connection error", { err: describe(err) }));
  cancelListener = await listenForCancellations(cancelSubscriber, space, queueNames, running, log);

  // Start-up work, done before the first job is taken so that none of it lands among the jobs: Prisma
  // loads its query compiler (~80 ms of CPU; `$connect` needs no PostgreSQL, the pool connects lazily,
  // so a worker still starts while PostgreSQL is down), the reconciler's first pass compares what
  // finished before this process ran, and the stats folder folds what the last processes left.
  await db.$connect();
  reconciler.start();
  const statsFolder = startStatsFolder(db, log);
  for (const worker of workers) {
    worker.run().catch((err) => log.error("worker stopped with an error", { queue: worker.name, err: describe(err) }));
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  for (const queue of queues) {
    const removed = await syncDeclaredSchedulers(queue, redis, declared.get(queue.name) ?? []);
    if (removed.length > 0) log.info("removed schedulers the code no longer declares", { queue: queue.name, removed });
  }
  // HISTORY_RETENTION_DAYS unset: history is kept for good and no sweep runs.
  const retention = config.historyRetentionDays
    ? new HistoryRetention(db, probe, log, {
        days: config.historyRetentionDays,
        intervalMs: config.historyRetentionIntervalMs,
        lockKey: retentionLockKey(config.queuePrefix),
      })
    : null;
  retention?.start();
  log.info("worker started", { queues: settings });

  return {
    queues: queueNames,
    settings,
    workers,
    metrics,
    ledger,
    ready: async () => {
      const { ok, checks } = await runReadyChecks({ postgres: () => poolOf(db).query("SELECT 1"), redis: () => probe.ping() });
      const running = workers.every((w) => w.isRunning());
      checks.worker = running ? "ok" : "not running";
      return { ok: ok && running, checks };
    },
    stop: async () => {
      await Promise.all(workers.map((w) => w.close()));
      await cancelListener?.stop();
      await closeRedis(cancelSubscriber);
      await lifecycle.drain();
      await reconciler.stop();
      await retention?.stop();
      await statsFolder.stop();
      await queueSet.close();
      await db.$disconnect();
      await Promise.all([closeRedis(probe), closeRedis(redis)]);
    },
  };
}
