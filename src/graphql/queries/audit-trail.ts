import { withGraphQLErrors } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { accessFilter } from "../tenancy.ts";
import { connectionOf } from "../types/connection.ts";
import { FailedJobAuditRef } from "../types/failed-job-audit.ts";
import { OperatorActionRef } from "../types/operator-action.ts";

const FailedJobAuditConnection = connectionOf("FailedJobAudit", FailedJobAuditRef);
const OperatorActionConnection = connectionOf("OperatorAction", OperatorActionRef);

builder.queryFields((t) => ({
  failedJobAudits: t.field({
    type: FailedJobAuditConnection,
    description:
      "Final failures, newest first (failedAt desc); optionally of one queue and one job. `unresolved: true` is the failed-job inbox (neither retried, replayed nor dismissed); `false`, the resolved ones; unset, all.",
    args: {
      queue: t.arg.string(),
      jobId: t.arg.id(),
      unresolved: t.arg.boolean(),
      first: t.arg.int({ defaultValue: 20 }),
      after: t.arg.string(),
    },
    resolve: (_root, args, ctx) =>
      withGraphQLErrors(() =>
        ctx.history.listFailedJobAudits(
          {
            queue: args.queue,
            jobId: args.jobId === null || args.jobId === undefined ? args.jobId : String(args.jobId),
            ...accessFilter(ctx.principal),
            unresolved: args.unresolved,
          },
          { first: args.first, after: args.after },
        ),
      ),
  }),
  operatorActions: t.field({
    type: OperatorActionConnection,
    description:
      "Control actions taken through the API, newest first; optionally of one queue, or of one bulk action (its rows, one per queue)",
    args: {
      queue: t.arg.string(),
      selectionId: t.arg.id({ description: "Only the rows of this bulk action (bulkJobAction's selectionId)" }),
      first: t.arg.int({ defaultValue: 20 }),
      after: t.arg.string(),
    },
    resolve: (_root, args, ctx) =>
      withGraphQLErrors(() =>
        ctx.history.listOperatorActions(
          { queue: args.queue, selectionId: args.selectionId == null ? null : String(args.selectionId), ...accessFilter(ctx.principal) },
          { first: args.first, after: args.after },
        ),
      ),
  }),
}));
