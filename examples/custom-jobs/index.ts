// A jobs module: your own job types without forking. Point JOBS_MODULE at it (or name it
// jobs/index.ts in the directory you start from) and both the API and the worker load it:
//
//   JOBS_MODULE=./examples/custom-jobs/index.ts npm run dev
import type { Processor } from "../../workers/processor.ts";
import { invoiceTotal } from "./invoice-total.job.ts";

/** The job types: the API validates enqueues with them and publishes their JSON Schema. */
export const definitions = [invoiceTotal];

/** The code, loaded only by the worker (the API never calls this, so it never imports processors). */
export const processors = async (): Promise<Processor[]> => [(await import("./invoice-total.processor.ts")).default as Processor];
