import type { FailedJobAuditView } from "../../jobs/history/index.ts";
import { builder } from "../builder.ts";

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
  }),
});
