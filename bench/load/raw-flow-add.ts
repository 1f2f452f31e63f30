// Baseline for enqueueFlow: raw BullMQ `FlowProducer.add` of the same tree (a `fanout` parent with
// `children` `noop` children, one queue), steered over IPC so the scenario can alternate it with the
// API's mutation: {count} adds `count` flows one after the other and answers each one's duration in
// ms. Every node carries its queue's per-queue prefix (REDIS_KEY_LAYOUT=per-queue, the `prefix` the
// API's own flows get) and the options the API's flows get (finished jobs kept as long, events
// stream trimmed the same), so both sides write the same keys the same way. Its own queue name, which
// nothing consumes, so its jobs and ids never meet the API's.
import { FlowProducer } from "bullmq";
import { KEEP_COMPLETED, KEEP_FAILED } from "../../src/jobs/bullmq/index.ts";
import { bullPrefix } from "../../src/testing/redis.ts";
import { scriptInput } from "../lib/child.ts";
import { nowMs } from "../lib/stats.ts";

const input = scriptInput<{ redisUrl: string; basePrefix: string; queue: string; children: number }>();
const prefix = bullPrefix(input.basePrefix, input.queue);
const producer = new FlowProducer({ connection: { url: input.redisUrl }, prefix: input.basePrefix });
await producer.waitUntilReady();
const opts = { removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED };
const queuesOptions = { [input.queue]: { streams: { events: { maxLen: 10_000 } } } };

async function flows(count: number): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < count; i++) {
    const tree = {
      queueName: input.queue,
      name: "fanout",
      data: { label: "bench" },
      prefix,
      opts,
      children: Array.from({ length: input.children }, () => ({ queueName: input.queue, name: "noop", data: {}, prefix, opts })),
    };
    const t = nowMs();
    await producer.add(tree, { queuesOptions });
    ms.push(nowMs() - t);
  }
  return ms;
}

process.on("message", (m: { count: number } | { stop: true }) => {
  if ("stop" in m) {
    void producer.close().then(() => process.exit(0));
    return;
  }
  flows(m.count).then(
    (ms) => process.send?.({ type: "ms", ms }),
    (err: unknown) => process.send?.({ type: "error", message: String(err) }),
  );
});
process.send?.({ type: "ready" });
process.on("disconnect", () => process.exit(0));
