import { demoNoop } from "../../src/jobs/definitions/demo-noop.ts";
import { defineProcessor, sleep } from "../processor.ts";

// `ctx.signal` and `ctx.progress` are read only when there are ticks: each is made on first read
// (an AbortController, a closure; see Attempt in run-job.ts), and a job without ticks needs neither.
export default defineProcessor(demoNoop, async ({ ticks = 0, tickMs = 0 }, ctx) => {
  for (let tick = 1; tick <= ticks; tick++) {
    if (tick > 1) await sleep(tickMs, ctx.signal);
    // `at` with sub-millisecond precision: latency is measured against it in another process.
    await ctx.progress({ tick, at: performance.timeOrigin + performance.now() });
  }
  return { ticks };
});
