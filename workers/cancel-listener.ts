import type { Worker } from "bullmq";
import type { Logger } from "../src/infra/logger.ts";
import type { RedisClient } from "../src/infra/redis.ts";
import { cancellation, cancelMessageSchema } from "../src/jobs/cancellation.ts";

/**
 * Listens for cancelJob requests on the control channel and aborts the job if one of this process's
 * workers is running it (BullMQ's `Worker.cancelJob` fires the processor's AbortSignal). A request
 * for a job another process runs is a no-op here. Uses its own connection (subscriber mode).
 */
export async function listenForCancellations(
  subscriber: RedisClient,
  prefix: string,
  workers: Worker[],
  log: Logger,
): Promise<() => Promise<void>> {
  const byQueue = new Map(workers.map((w) => [w.name, w]));
  const channel = cancellation.channel(prefix);
  subscriber.on("message", (from: string, message: string) => {
    if (from !== channel) return;
    let parsed: ReturnType<typeof cancelMessageSchema.parse>;
    try {
      parsed = cancelMessageSchema.parse(JSON.parse(message));
    } catch (err) {
      log.warn("ignoring a malformed cancel request", { message, err: err instanceof Error ? err.message : String(err) });
      return;
    }
    const cancelled = byQueue.get(parsed.queue)?.cancelJob(parsed.jobId, parsed.reason) ?? false;
    if (cancelled) log.info("cancelling active job", { queue: parsed.queue, jobId: parsed.jobId, reason: parsed.reason });
  });
  await subscriber.subscribe(channel);
  return async () => {
    await subscriber.unsubscribe(channel);
  };
}
