import { UnrecoverableError, Worker } from "bullmq";
import type { Config } from "../src/config.ts";
import type { Logger } from "../src/infra/logger.ts";
import { createPrisma } from "../src/infra/prisma.ts";
import { closeRedis, createRedis } from "../src/infra/redis.ts";
import { HistoryStore } from "../src/jobs/history.ts";
import { CANCELLED_PREFIX, splitData } from "../src/jobs/job-view.ts";
import { createRegistry, defaultDefinitions } from "../src/jobs/registry.ts";
import { Lifecycle } from "./lifecycle.ts";
import type { Processor } from "./processor.ts";
import { processors as allProcessors } from "./processors/index.ts";

export interface WorkerRuntime {
  queues: string[];
  workers: Worker[];
  ready(): Promise<{ ok: boolean; checks: Record<string, string> }>;
  /** Stops taking jobs and waits for active ones (up to the grace period), then closes everything. */
  stop(): Promise<void>;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * One BullMQ Worker per registered queue. Each job's payload is parsed again with its definition's
 * schema before the processor runs; a payload that does not match fails at once, without retries.
 */
export async function createWorkerRuntime(config: Config, log: Logger, processors: Processor[] = allProcessors): Promise<WorkerRuntime> {
  const registry = createRegistry(defaultDefinitions({ demoQueue: config.demoQueue }));
  const db = createPrisma(config.databaseUrl, { max: 5 });
  const lifecycle = new Lifecycle(new HistoryStore(db), db, log);
  const workers: Worker[] = [];
  const probe = createRedis(config.redisUrl, "request");
  probe.on("error", () => {});

  for (const queue of registry.queues()) {
    const byName = new Map<string, Processor>();
    for (const p of processors) if (p.definition.queue === queue) byName.set(p.definition.name, p);
    const concurrency = config.workerConcurrency ?? Math.max(1, ...registry.ofQueue(queue).map((d) => d.defaults.concurrency ?? 1));

    const worker = new Worker(
      queue,
      async (job, _token, signal) => {
        const processor = byName.get(job.name);
        if (!processor) throw new UnrecoverableError(`No processor for job type ${queue}.${job.name} in this worker`);
        const parsed = processor.definition.schema.safeParse(splitData(job.data).data);
        if (!parsed.success) {
          throw new UnrecoverableError(
            `Invalid payload: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
          );
        }
        const abort = signal ?? new AbortController().signal;
        try {
          return await processor.run(parsed.data, {
            job,
            signal: abort,
            progress: (value) => job.updateProgress(value),
            log: async (line) => {
              await job.log(line);
            },
          });
        } catch (err) {
          // A cancelled job ends at once, whatever the processor threw on its way out.
          if (abort.aborted) throw new UnrecoverableError(`${CANCELLED_PREFIX}: ${describe(abort.reason)}`);
          throw err;
        }
      },
      {
        connection: { url: config.redisUrl, maxRetriesPerRequest: null },
        prefix: config.queuePrefix,
        concurrency,
        autorun: false,
      },
    );
    worker.on("active", (job) => lifecycle.active(job));
    worker.on("progress", (job) => lifecycle.progress(job));
    worker.on("completed", (job) => lifecycle.completed(job));
    worker.on("failed", (job) => {
      if (job) lifecycle.failed(job);
    });
    worker.on("error", (err) => log.warn("worker error", { queue, err: describe(err) }));
    workers.push(worker);
  }

  for (const worker of workers) {
    worker.run().catch((err) => log.error("worker stopped with an error", { queue: worker.name, err: describe(err) }));
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  log.info("worker started", { queues: registry.queues() });

  return {
    queues: registry.queues(),
    workers,
    ready: async () => {
      const checks: Record<string, string> = {};
      let ok = true;
      try {
        await db.$queryRaw`SELECT 1`;
        checks.postgres = "ok";
      } catch (err) {
        ok = false;
        checks.postgres = `failed: ${describe(err)}`;
      }
      try {
        await probe.ping();
        checks.redis = "ok";
      } catch (err) {
        ok = false;
        checks.redis = `failed: ${describe(err)}`;
      }
      const running = workers.every((w) => w.isRunning());
      checks.worker = running ? "ok" : "not running";
      ok &&= running;
      return { ok, checks };
    },
    stop: async () => {
      await Promise.all(workers.map((w) => w.close()));
      await lifecycle.drain();
      await db.$disconnect();
      await closeRedis(probe);
    },
  };
}
