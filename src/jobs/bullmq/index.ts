// Public face of src/jobs/bullmq. The only code that knows BullMQ's keys, fields and streams: the queue set and the cancellation marker.
// Code outside src/jobs imports this file only (npm run lint checks it).
export * from "./cancellation.ts";
export * from "./declared-schedules.ts";
export * from "./queue-gauges.ts";
export * from "./queue-set.ts";
