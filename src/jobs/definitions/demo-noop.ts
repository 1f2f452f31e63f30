import { z } from "zod";
import { defineJob } from "../define-job.ts";

/**
 * `demo.noop`: does nothing, or reports `ticks` progress events `tickMs` apart. Each progress value
 * carries the wall-clock time it was reported at, so the bench can measure delivery latency and gaps.
 */
export const demoNoop = defineJob({
  queue: "demo",
  name: "noop",
  description: "Returns at once; with `ticks`, first reports progress { tick, at } that many times, `tickMs` apart.",
  schema: z
    .object({
      ticks: z.number().int().min(0).max(100_000).optional(),
      tickMs: z.number().int().min(0).max(3_600_000).optional(),
    })
    .strict(),
  defaults: { attempts: 1, concurrency: 10 },
});
