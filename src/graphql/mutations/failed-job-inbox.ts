import { builder } from "../builder.ts";
import { accessFilter } from "../tenancy.ts";
import { BulkActionSuccess, bulkActionErrors } from "./job-actions.ts";

builder.mutationFields((t) => ({
  dismissFailedJobAudits: t.field({
    type: BulkActionSuccess,
    errors: bulkActionErrors,
    description:
      "Takes failed-job audit rows out of the inbox (`failedJobAudits(unresolved: true)`) as DISMISSED, without touching the jobs. Rows already resolved and unknown ids are left alone; `count` is how many were dismissed. At most 1,000 ids; each must be an audit id (UUID).",
    args: { ids: t.arg.idList({ required: true }) },
    resolve: async (_root, args, ctx) => ({
      count: await ctx.control.dismissFailedJobAudits(
        args.ids.map((id) => String(id)),
        ctx.actor,
        accessFilter(ctx.principal),
      ),
    }),
  }),
}));
