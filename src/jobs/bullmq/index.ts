// Public face of src/jobs/bullmq. The only code that knows BullMQ's keys, fields and streams: the
// queue set, the cancellation marker, every Redis key and channel name (keys.ts) and the one lease.
// Code outside src/jobs imports this file only (npm run lint checks it).
export {
  type CancelMessage,
  cancellation,
  cancelMessageSchema,
  clearCancelMark,
  type FailedJobRef,
  isCancelled,
  markCancelled,
  whichCancelled,
} from "./cancellation.ts";
export * from "./declared-schedules.ts";
export * from "./flows.ts";
export { appendCancelledEvent, appendLogEvent, finishedPage, isSchedulerJob, jobStateIfExists, prefixOf } from "./internals.ts";
export * from "./job-ids.ts";
export { channels, hashTagOf, KEY_LAYOUTS, type KeyLayout, type KeySpace, keySpace, keys, queuePrefix, scanPatterns } from "./keys.ts";
export { layoutProblems, queuesLeftInOtherLayout } from "./layout-check.ts";
export { Lease } from "./lease.ts";
export * from "./queue-gauges.ts";
export { KEEP_COMPLETED, KEEP_FAILED, QueueSet } from "./queue-set.ts";
