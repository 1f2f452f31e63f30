import { z } from "zod";
import { defineJob } from "../define-job.ts";

/**
 * `demo.fanout`: the parent of a flow (enqueueFlow) whose children are `demo.sleep` jobs; runs once
 * they have finished and adds up their results.
 */
export const demoFanout = defineJob({
  queue: "demo",
  name: "fanout",
  description:
    "A flow parent (enqueueFlow with demo.sleep children): runs once its children have finished and returns how many completed and their steps in total.",
  schema: z.object({ label: z.string().max(200).optional() }).strict(),
  defaults: { attempts: 1 },
});
