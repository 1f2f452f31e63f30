// Public face of src/jobs/control. What operators and clients do to jobs and queues: enqueue, cancel, retry, replay, schedulers, the operator audit.
// Code outside src/jobs imports this file only (npm run lint checks it).
export * from "./job-control.ts";
export * from "./job-service.ts";
export * from "./merge-patch.ts";
export * from "./operator-actions.ts";
export * from "./queue-service.ts";
export * from "./recovery.ts";
