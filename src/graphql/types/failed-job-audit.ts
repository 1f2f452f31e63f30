import type { FailedJobAuditView } from "../../jobs/history/index.ts";
import { builder } from "../builder.ts";

export const FailedJobResolutionEnum = builder.enumType("FailedJobResolution", {
  description: "How a failed-job audit row left the inbox",
  values: {
    RETRIED: { description: "retryJob or retryFailedJobs put the job back in the queue" },
    REPLAYED: { description: "replayJob enqueued a new job from it" },
    DISMISSED: { description: "dismissFailedJobAudits: looked at, nothing to do" },
  } as const,
});

/** One row per job that failed for good (no attempts left), written by the worker that saw it. */
export const FailedJobAuditRef = builder.objectRef<FailedJobAuditView>("FailedJobAudit").implement({
  description: "One row per job that failed for good (no attempts left), written by the worker",
  fields: (t) => ({
    id: t.exposeID("id"),
    queue: t.exposeString("queue"),
    jobId: t.exposeID("jobId"),
    jobName: t.exposeString("jobName"),
    data: t.expose("data", { type: "JSON" }),
    failedReason: t.exposeString("failedReason"),
    stacktrace: t.exposeStringList("stacktrace"),
    attemptsMade: t.exposeInt("attemptsMade"),
    failedAt: t.expose("failedAt", { type: "DateTime" }),
    workerId: t.exposeString("workerId", { description: "The worker process that saw the final failure" }),
    resolvedAt: t.expose("resolvedAt", {
      type: "DateTime",
      nullable: true,
      description: "When it left the inbox (retried, replayed or dismissed); null while unresolved",
    }),
    resolvedBy: t.exposeString("resolvedBy", { nullable: true, description: "The actor who resolved it" }),
    resolution: t.field({ type: FailedJobResolutionEnum, nullable: true, resolve: (a) => a.resolution }),
  }),
});
