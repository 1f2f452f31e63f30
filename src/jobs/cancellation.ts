import { z } from "zod";

/**
 * How the API tells workers to cancel an active job. The API first sets a marker key (so a worker
 * that picks the job up later, or gets it again after a stall, cancels it at once), then publishes
 * on one channel every worker process subscribes to; the worker that holds the job aborts it.
 */
export const cancellation = {
  channel: (prefix: string) => `${prefix}:control:cancel`,
  key: (prefix: string, queue: string, jobId: string) => `${prefix}:${queue}:cancelled:${jobId}`,
  /** Markers outlive any job BullMQ still holds (failed jobs are kept a week). */
  markerTtlSeconds: 8 * 24 * 3600,
};

export const cancelMessageSchema = z.object({ queue: z.string(), jobId: z.string(), reason: z.string() });
export type CancelMessage = z.infer<typeof cancelMessageSchema>;
