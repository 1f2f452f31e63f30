import type { Processor } from "../processor.ts";
import demoFail from "./demo-fail.ts";
import demoFanout from "./demo-fanout.ts";
import demoNoop from "./demo-noop.ts";
import demoSleep from "./demo-sleep.ts";
import reportCsv from "./report-csv.ts";
import webhookDeliver from "./webhook-deliver.ts";

/** Every processor this worker build can run; a queue is served when its job types are registered. */
export const processors: Processor[] = [
  demoSleep as Processor,
  demoFail as Processor,
  demoNoop as Processor,
  demoFanout as Processor,
  webhookDeliver as Processor,
  reportCsv as Processor,
];
