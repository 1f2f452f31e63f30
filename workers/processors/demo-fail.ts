import { demoFail } from "../../src/jobs/definitions/demo-fail.ts";
import { defineProcessor } from "../processor.ts";

export default defineProcessor(demoFail, async ({ message, failTimes }, { job }) => {
  if (failTimes === undefined || job.attemptsMade < failTimes) throw new Error(message);
  return { ok: true };
});
