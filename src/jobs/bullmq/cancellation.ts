import { z } from "zod";

/**
 * How the API tells workers to cancel an active job. The API first marks the job itself: the
 * `defa` field of its hash (`Job.deferredFailure`), which BullMQ's Worker checks when it takes a job and turns
 * into an UnrecoverableError without running the processor. So a worker that picks the job up later
 * (after a stall, or in a race with the cancel) fails it at once, and no worker reads anything extra
 * per job. Then the API publishes on one channel every worker process subscribes to; the worker that
 * holds the job aborts it.
 */
export const cancellation = {
  channel: (prefix: string) => `${prefix}:control:cancel`,
  /** The job-hash field BullMQ's Worker fails a job with before running it. */
  field: "defa",
  /** Sets the field only on a job that still exists (KEYS[1] the job hash, ARGV[1] the failure). */
  markScript: `if redis.call("EXISTS", KEYS[1]) == 1 then redis.call("HSET", KEYS[1], "defa", ARGV[1]) return 1 end return 0`,
};

export const cancelMessageSchema = z.object({ queue: z.string(), jobId: z.string(), reason: z.string() });
export type CancelMessage = z.infer<typeof cancelMessageSchema>;
