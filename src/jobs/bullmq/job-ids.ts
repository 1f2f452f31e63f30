import { FlowProducer, Job, type JobJson, type JobsOptions, Queue, type RedisQueueBackend } from "bullmq";
import type { RedisClient } from "../../infra/redis.ts";
import { type KeySpace, keys } from "./keys.ts";

/**
 * Job ids known before the job is in Redis, so its history row can be committed first (durable
 * enqueue, issue #18). BullMQ numbers jobs itself inside its add script; the API instead takes the
 * next number from a counter of its own (`<queue prefix>:<queue>:seq`) and hands it to BullMQ as the job's
 * id. Ids stay what they were: 1, 2, 3... per queue.
 *
 * The counter is never created implicitly: a missing one (first start, or a Redis that lost its
 * data) makes `reserve` answer null, and the caller seeds it from the largest id history holds
 * (`seed`), so a Redis that came back empty never hands out an id history already has.
 */

/** `<queue prefix>:<queue>:seq`: the API's job-id counter. */
export function jobIdCounterKey(space: KeySpace, queue: string): string {
  return keys.idCounter(space, queue);
}

/**
 * KEYS[1] our counter, KEYS[2] BullMQ's; ARGV[1] how many. Returns the last id reserved, or -1 when
 * our counter is missing. Starts past BullMQ's counter too, so jobs added with BullMQ directly
 * (which number themselves from it) are not reused.
 */
const RESERVE = `
local seq = redis.call("GET", KEYS[1])
if not seq then return -1 end
local bull = tonumber(redis.call("GET", KEYS[2]) or "0")
local last = math.max(tonumber(seq), bull) + tonumber(ARGV[1])
redis.call("SET", KEYS[1], last)
return last`;

/** KEYS[1] our counter; ARGV[1] a floor. Raises the counter to the floor (creating it); never lowers it. */
const SEED = `
local seq = tonumber(redis.call("GET", KEYS[1]) or "-1")
if seq < tonumber(ARGV[1]) then redis.call("SET", KEYS[1], ARGV[1]) end
return 1`;

export class JobIds {
  private readonly redis: RedisClient;
  private readonly space: KeySpace;

  constructor(redis: RedisClient, space: KeySpace) {
    this.redis = redis;
    this.space = space;
  }

  /** `count` fresh ids of `queue`, in order; null when the counter must be seeded first. */
  async reserve(queue: string, count: number): Promise<string[] | null> {
    const last = Number(await this.redis.eval(RESERVE, 2, keys.idCounter(this.space, queue), keys.bullIdCounter(this.space, queue), count));
    if (last < 0) return null;
    return Array.from({ length: count }, (_, i) => String(last - count + 1 + i));
  }

  /** Makes the counter at least `floor` (the largest numeric id history holds). */
  async seed(queue: string, floor: number): Promise<void> {
    await this.redis.eval(SEED, 1, keys.idCounter(this.space, queue), Math.max(0, Math.floor(floor)));
  }
}

/**
 * BullMQ refuses integer custom ids ("Custom Id cannot be integers") to keep them apart from its own
 * numbering. Ours are its numbering, only reserved before the add: this job lets them through and
 * keeps every other check.
 */
class ReservedIdJob extends Job {
  protected override validateOptions(jobData: JobJson): void {
    const id = this.opts.jobId;
    if (id && /^[1-9]\d*$/.test(id)) {
      this.opts.jobId = undefined;
      try {
        super.validateOptions(jobData);
      } finally {
        this.opts.jobId = id;
      }
      return;
    }
    super.validateOptions(jobData);
  }
}

/** A bulk add built and not yet sent: `send()` sends it (once) and answers addBulk's jobs. */
export interface PreparedBulk {
  send(): Promise<Job[]>;
}

/** A BullMQ Queue whose adds accept the ids `JobIds` reserved. */
export class ReservedIdQueue extends Queue {
  protected override get Job(): typeof Job {
    return ReservedIdJob as unknown as typeof Job;
  }

  /**
   * `addBulk` in two steps: the CPU work of a bulk add (its Job objects and their JSON, BullMQ's
   * option checks and encoding, the pipeline's commands) now, and nothing sent to Redis until
   * `send()`. enqueueJobs builds its adds while its history rows commit, so only the sending is left
   * after the commit (rows still reach PostgreSQL before any job reaches Redis). The same steps as
   * BullMQ's addBulk -> Job.createBulk -> RedisQueueBackend.addJobs (test/bullmq-internals.test.ts
   * checks they still add what addBulk adds); with telemetry on, `send()` is BullMQ's own addBulk,
   * so the add keeps its span.
   */
  async prepareBulk(jobs: { name: string; data: unknown; opts: JobsOptions }[]): Promise<PreparedBulk> {
    if (this.opts.telemetry) return { send: () => this.addBulk(jobs) };
    const JobClass = this.Job;
    const instances = jobs.map((job) => new JobClass(this, job.name, job.data, { ...this.jobsOpts, ...job.opts }, job.opts.jobId));
    const entries = instances.map((job) => {
      const json = job.asJSON();
      (job as unknown as { validateOptions(json: JobJson): void }).validateOptions(json);
      return { json, id: job.id as string, parentKey: job.parentKey };
    });
    const backend = this.backend as unknown as RedisQueueBackend;
    const pipeline = (await backend.client).pipeline();
    for (const e of entries) {
      // Queued on the pipeline, not sent (BullMQ's addJobs does the same, then execs at once).
      void backend
        .addJobToTransaction(pipeline, e.json, e.id, {
          parentKey: e.parentKey,
          parentDependenciesKey: e.parentKey ? `${e.parentKey}:dependencies` : "",
        })
        .catch(() => undefined);
    }
    let sent = false;
    return {
      send: async () => {
        if (sent) throw new Error("a prepared bulk add is sent once");
        sent = true;
        const results = (await pipeline.exec()) ?? [];
        for (const [k, [err, id]] of results.entries()) {
          if (err) throw err;
          (instances[k] as Job).id = id as string;
        }
        return instances;
      },
    };
  }
}

/** A BullMQ FlowProducer whose adds accept the ids `JobIds` reserved (every node of an `enqueueFlow` has one). */
export class ReservedIdFlowProducer extends FlowProducer {
  protected override get Job(): typeof Job {
    return ReservedIdJob as unknown as typeof Job;
  }
}
