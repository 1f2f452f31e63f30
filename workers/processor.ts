import type { Job } from "bullmq";
import { type Config, ConfigError } from "../src/config.ts";
import type { Db } from "../src/infra/prisma.ts";
import type { JobData, JobDefinition } from "../src/jobs/define-job.ts";
import type { JobRegistry } from "../src/jobs/registry.ts";

/** What a processor gets besides its parsed payload. */
export interface ProcessorContext {
  /** The BullMQ job (read-only use: id, attemptsMade, opts). */
  job: Job;
  /** Fires when the job is cancelled or the worker shuts down hard; stop as soon as you can. */
  signal: AbortSignal;
  /** Reports progress: a number 0..100 or an object. */
  progress(value: number | object): Promise<void>;
  /** Appends a line to the job's logs (readable as `Job.logs`). */
  log(line: string): Promise<void>;
  /** The worker's configuration (secrets, directories). */
  config: Config;
  /** The worker's PostgreSQL client (for processors that read history, like `report.csv`). */
  db: Db;
  /**
   * `<queue>:<job id>`: the same on every run of this job (retries, stalls, a re-add by the recovery
   * reconciler after Redis lost it). Delivery is at-least-once: key side effects on this (an
   * idempotency key sent downstream, a unique constraint) so a second run does not repeat them.
   */
  idempotencyKey: string;
  /** Which run of the job this is: 1 for the first, attempts already made + 1 after that. */
  attempt: number;
  /**
   * A flow parent's (enqueueFlow) completed children's results, keyed `<queue>:<id>`; `{}` for a job
   * without children. A parent runs once its children have finished, so they are all there (minus
   * failed children whose failure was ignored).
   */
  childrenValues(): Promise<Record<string, unknown>>;
}

/**
 * A processor: code for one job type, typed by its definition. Throw `UnrecoverableError` for bad
 * input or a business "no"; anything else thrown is retried while attempts remain.
 */
export interface Processor<D extends JobDefinition = JobDefinition> {
  definition: D;
  run(data: JobData<D>, ctx: ProcessorContext): Promise<unknown>;
}

export function defineProcessor<D extends JobDefinition>(definition: D, run: Processor<D>["run"]): Processor<D> {
  return { definition, run };
}

/**
 * The jobs module's processors (JOBS_MODULE), checked: each is a `defineProcessor` value whose
 * definition is registered. Throws a ConfigError naming the first that is not.
 */
export function checkProcessors(list: unknown[], registry: JobRegistry, source: string): Processor[] {
  const seen = new Set<string>();
  return list.map((value, i) => {
    const p = value as Partial<Processor> | null;
    if (typeof p !== "object" || p === null || typeof p.run !== "function" || typeof p.definition?.queue !== "string") {
      throw new ConfigError([`JOBS_MODULE: ${source}: processors[${i}] is not a defineProcessor(...) value`]);
    }
    const { queue, name } = p.definition;
    if (registry.get(queue, name) === undefined) {
      throw new ConfigError([`JOBS_MODULE: ${source}: processors[${i}] runs ${queue}.${name}, which \`definitions\` does not export`]);
    }
    if (seen.has(`${queue}.${name}`)) throw new ConfigError([`JOBS_MODULE: ${source}: two processors run ${queue}.${name}`]);
    seen.add(`${queue}.${name}`);
    return p as Processor;
  });
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it fires. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
