import type { Job } from "bullmq";
import type { Logger } from "../src/infra/logger.ts";
import type { RedisClient } from "../src/infra/redis.ts";
import { appendLogEvent } from "../src/jobs/bullmq/index.ts";
import type { JobLogStore } from "../src/jobs/history/index.ts";

/** The longest line copied into the events stream (a LOG event); longer ones are cut there only. */
const MAX_EVENT_LINE = 65_536;

export interface JobLogSinks {
  store: JobLogStore;
  /** Appends to the queue's events stream (the connection the ledger uses). */
  redis: RedisClient;
  eventsKey: (queue: string) => string;
  eventsMaxLen: number;
  log: Logger;
}

/**
 * What a processor's `ctx.log(line)` does: BullMQ's `job.log` (Redis, where `Job.logs` reads it while
 * the job is there), a `log` entry in the queue's events stream (a LOG event for `jobEvents` and
 * `queueEvents` subscribers, in order with the job's other events), and the line into history
 * (table job_log, the first 1,000 lines / 64 KiB of each job), written in the background: a processor
 * does not wait for PostgreSQL, and a line PostgreSQL could not take stays in Redis only.
 */
export function jobLogger(sinks: JobLogSinks): (job: Job, line: string) => Promise<void> {
  return async (job, line) => {
    const text = String(line);
    const seq = await job.log(text);
    const at = Date.now();
    const jobId = String(job.id);
    await appendLogEvent(
      sinks.redis,
      sinks.eventsKey(job.queueName),
      sinks.eventsMaxLen,
      jobId,
      text.length > MAX_EVENT_LINE ? text.slice(0, MAX_EVENT_LINE) : text,
    );
    sinks.store.append({ queue: job.queueName, jobId, seq, at, line: text }).catch((err: unknown) => {
      sinks.log.warn("could not keep a job log line in history (it stays in Redis while the job does)", {
        queue: job.queueName,
        jobId,
        err: err instanceof Error ? err.message : String(err),
      });
    });
  };
}
