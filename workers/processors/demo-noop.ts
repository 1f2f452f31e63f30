import { demoNoop } from "../../src/jobs/definitions/demo-noop.ts";
import { defineProcessor, sleep } from "../processor.ts";

export default defineProcessor(demoNoop, async ({ ticks = 0, tickMs = 0 }, { progress, signal }) => {
  for (let tick = 1; tick <= ticks; tick++) {
    if (tick > 1) await sleep(tickMs, signal);
    // `at` with sub-millisecond precision: latency is measured against it in another process.
    await progress({ tick, at: performance.timeOrigin + performance.now() });
  }
  return { ticks };
});
