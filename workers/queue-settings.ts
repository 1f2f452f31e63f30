import {
  type Config,
  ConfigError,
  QUEUE_CONCURRENCY_PREFIX,
  QUEUE_RATE_LIMIT_PREFIX,
  QUEUE_TIMEOUT_PREFIX,
  queueEnvSuffix,
} from "../src/config.ts";
import type { JobRegistry } from "../src/jobs/registry.ts";

/** How one BullMQ Worker of this process is set up. */
export interface QueueSettings {
  queue: string;
  concurrency: number;
  rateLimit: { max: number; durationMs: number } | undefined;
  /** WORKER_TIMEOUT_MS_<QUEUE>, for every job type of the queue; unset: each definition's `timeoutMs`. */
  timeoutMs: number | undefined;
}

/**
 * Which queues this worker serves and how: WORKER_QUEUES (default: every registered queue);
 * concurrency from WORKER_CONCURRENCY_<QUEUE>, else WORKER_CONCURRENCY, else the largest of the
 * queue's definitions (at least 1); the rate limit from WORKER_RATE_LIMIT_<QUEUE>, else the strictest
 * definition's. Throws a ConfigError naming every unknown queue in WORKER_QUEUES and every per-queue
 * variable that matches no registered queue (a typo would otherwise be silently ignored).
 */
export function resolveQueueSettings(config: Config, registry: JobRegistry): QueueSettings[] {
  const known = registry.queues();
  const problems: string[] = [];
  for (const q of config.workerQueues ?? []) {
    if (!registry.hasQueue(q)) problems.push(`WORKER_QUEUES: unknown queue "${q}" (registered: ${known.join(", ")})`);
  }
  const suffixes = new Set(known.map(queueEnvSuffix));
  for (const [prefix, values] of [
    [QUEUE_CONCURRENCY_PREFIX, config.queueConcurrency],
    [QUEUE_RATE_LIMIT_PREFIX, config.queueRateLimit],
    [QUEUE_TIMEOUT_PREFIX, config.queueTimeoutMs],
  ] as const) {
    for (const suffix of Object.keys(values)) {
      if (!suffixes.has(suffix)) {
        problems.push(
          `${prefix}${suffix}: no registered queue is called that (expected one of ${[...suffixes].map((s) => prefix + s).join(", ")})`,
        );
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const served = config.workerQueues ? [...new Set(config.workerQueues)].sort() : known;
  return served.map((queue) => {
    const defs = registry.ofQueue(queue);
    const suffix = queueEnvSuffix(queue);
    const limits = defs.map((d) => d.defaults.rateLimit).filter((l) => l !== undefined);
    const strictest = limits.sort((a, b) => a.max / a.durationMs - b.max / b.durationMs)[0];
    return {
      queue,
      concurrency:
        config.queueConcurrency[suffix] ?? config.workerConcurrency ?? Math.max(1, ...defs.map((d) => d.defaults.concurrency ?? 1)),
      rateLimit: config.queueRateLimit[suffix] ?? strictest,
      timeoutMs: config.queueTimeoutMs[suffix],
    };
  });
}
