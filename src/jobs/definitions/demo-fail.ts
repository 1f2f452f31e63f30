import { z } from "zod";
import { defineJob } from "../define-job.ts";

/** `demo.fail`: throws `message` while attemptsMade < failTimes (always when failTimes is absent). */
export const demoFail = defineJob({
  queue: "demo",
  name: "fail",
  description: "Throws Error(message) while attemptsMade < failTimes (always when failTimes is absent), else returns { ok: true }.",
  schema: z
    .object({
      message: z.string().max(10_000),
      failTimes: z.number().int().min(0).optional(),
    })
    .strict(),
  defaults: { attempts: 1, concurrency: 10 },
});
