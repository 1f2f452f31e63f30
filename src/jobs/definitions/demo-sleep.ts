import { z } from "zod";
import { defineJob } from "../define-job.ts";

/** `demo.sleep`: waits `steps` times `stepMs`, reporting progress after each step. */
export const demoSleep = defineJob({
  queue: "demo",
  name: "sleep",
  description: "Sleeps `steps` times `stepMs` milliseconds, reporting progress after each step.",
  schema: z
    .object({
      steps: z.number().int().min(1).max(100_000),
      stepMs: z.number().int().min(0).max(3_600_000),
    })
    .strict(),
  defaults: { attempts: 1, concurrency: 10 },
});
