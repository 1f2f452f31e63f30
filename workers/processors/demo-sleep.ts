import { demoSleep } from "../../src/jobs/definitions/demo-sleep.ts";
import { defineProcessor, sleep } from "../processor.ts";

export default defineProcessor(demoSleep, async ({ steps, stepMs }, { progress, signal }) => {
  for (let i = 1; i <= steps; i++) {
    await sleep(stepMs, signal);
    await progress(Math.round((100 * i) / steps));
  }
  return { steps };
});
