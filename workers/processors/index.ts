import type { Processor } from "../processor.ts";
import demoFail from "./demo-fail.ts";
import demoSleep from "./demo-sleep.ts";

/** Every processor this worker build can run; a queue is served when its job types are registered. */
export const processors: Processor[] = [demoSleep as Processor, demoFail as Processor];
