// Public face of src/jobs/control. What operators and clients do to jobs and queues: enqueue, cancel, retry, replay, schedulers, the operator audit.
// Code outside src/jobs imports this file only (npm run lint checks it).

export { PayloadCipher, UnsealError } from "../payload-cipher.ts";
export { type BulkActionOptions, BulkActions, type BulkSelector, bulkReplayId } from "./bulk-actions.ts";
export { JobControl, type JobControlOptions, type PerJobOptions } from "./job-control.ts";
export {
  type EnqueueInput,
  type FlowNodeInput,
  JobService,
  type JobServiceOptions,
  type JobVisibility,
  MAX_PRIORITY,
  PARENT_POLICIES,
  type ParentPolicy,
} from "./job-service.ts";
export { type Actor, actorName, actorTenant, type OperatorActionInput, OperatorActionLog } from "./operator-actions.ts";
export { PayloadSecrets, type Restored, type SecretJob } from "./payload-secrets.ts";
export {
  DEFAULT_SCHEDULER_LIMITS,
  type JobCounts,
  MAX_SCHEDULER_PAGE,
  QueueService,
  type QueueView,
  type SchedulerLimits,
  type SchedulerView,
  schedulerOptions,
  toJobCounts,
  type UpsertSchedulerInput,
} from "./queue-service.ts";
export * from "./recovery.ts";
