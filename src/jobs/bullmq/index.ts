// Public face of src/jobs/bullmq. The only code that knows BullMQ's keys, fields and streams: the
// queue set, the cancellation marker, every Redis key and channel name (keys.ts) and the one lease.
// Code outside src/jobs imports this file only (npm run lint checks it).
export * from "./cancellation.ts";
export * from "./internals.ts";
export * from "./keys.ts";
export * from "./lease.ts";
export * from "./queue-set.ts";
