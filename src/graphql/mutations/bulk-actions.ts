import {
  BulkActionRunningError,
  ForbiddenError,
  InvalidStateError,
  NotFoundError,
  SelectionTooLargeError,
  ValidationError,
} from "../../jobs/errors.ts";
import { checkSelectionId } from "../../jobs/history/index.ts";
import { withGraphQLErrors, withUnavailable } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { JobFilter } from "../queries/jobs.ts";
import { accessFilter, actingAs, assertQueueVisible, canUseSelection, noSelection } from "../tenancy.ts";
import { BulkActionEventRef, BulkActionRef, BulkJobActionType } from "../types/bulk-action.ts";

const bulkJobActionErrors = {
  types: [ValidationError, NotFoundError, ForbiddenError, InvalidStateError, SelectionTooLargeError, BulkActionRunningError],
  union: { name: "BulkJobActionResult" },
  result: { name: "BulkJobActionSuccess" },
};

builder.mutationFields((t) => ({
  bulkJobAction: t.field({
    type: BulkActionRef,
    errors: bulkJobActionErrors,
    description:
      "Selects the jobs `filter` matches now (the `jobs` query's filter, within the caller's tenant and queues) and freezes their ids: " +
      "the answer has the count, a sample and a `selectionId` to confirm within BULK_SELECTION_TTL_MS. `dryRun: false` selects and confirms at once. " +
      "More than BULK_MAX_SELECTION jobs: SelectionTooLargeError with the count, nothing selected.",
    args: {
      action: t.arg({ type: BulkJobActionType, required: true }),
      filter: t.arg({ type: JobFilter, required: true }),
      dryRun: t.arg.boolean({ defaultValue: true }),
    },
    resolve: async (_root, args, ctx) => {
      const p = ctx.principal;
      if (args.filter.queue) assertQueueVisible(p, args.filter.queue);
      // As `jobs` reads: a tenant-bound key within its tenant (naming another selects nothing), a queue-limited one within its queues.
      const access = accessFilter(p);
      const filter = { ...args.filter, ...access };
      if (access.tenant && args.filter.tenant && args.filter.tenant !== access.tenant) filter.queues = [];
      const selection = await ctx.bulk.select(args.action, filter, args.filter, { actor: actingAs(p), tenant: p.tenant, queues: p.queues });
      if (args.dryRun !== false) return selection;
      return withUnavailable(() =>
        ctx.bulk.confirm(
          selection.id,
          actingAs(p),
          () => true,
          () => noSelection(selection.id),
        ),
      );
    },
  }),
  confirmBulkJobAction: t.field({
    type: BulkActionRef,
    errors: bulkJobActionErrors,
    description:
      "Acts on exactly the jobs a dry run froze (not on what its filter matches now), in batches of BULK_BATCH_SIZE, resumed by another API instance if this one stops. " +
      "Answers at once (RUNNING); follow it with bulkActionEvents or bulkAction. Unknown, expired, or not the caller's to see: NotFoundError. " +
      "Confirmed already: InvalidStateError. Another bulk action running on one of its queues: BulkActionRunningError.",
    args: { selectionId: t.arg.id({ required: true }) },
    resolve: async (_root, args, ctx) => {
      const id = checkSelectionId(String(args.selectionId));
      return ctx.bulk.confirm(
        id,
        actingAs(ctx.principal),
        (s) => canUseSelection(ctx.principal, s),
        () => noSelection(id),
      );
    },
  }),
}));

builder.queryField("bulkAction", (t) =>
  t.field({
    type: BulkActionRef,
    nullable: true,
    description: "A bulk action by its selectionId: its status and counts. Null when unknown, expired, or not the caller's to see.",
    args: { selectionId: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) =>
      withGraphQLErrors(async () => {
        const s = await ctx.bulk.get(checkSelectionId(String(args.selectionId)));
        if (!s || !canUseSelection(ctx.principal, s)) return null;
        return s.status === "PENDING" && s.expiresAt.getTime() <= Date.now() ? null : s;
      }),
  }),
);

builder.subscriptionField("bulkActionEvents", (t) =>
  t.field({
    type: BulkActionEventRef,
    description:
      "A bulk action's counts: a SNAPSHOT first, then one PROGRESS per batch, ending after DONE (at once for one that is DONE). " +
      "Subscribe before confirming to see it from the start. Unknown, expired or not the caller's: NOT_FOUND.",
    args: { selectionId: t.arg.id({ required: true }) },
    subscribe: (_root, args, ctx) =>
      withGraphQLErrors(async () => {
        const id = checkSelectionId(String(args.selectionId));
        return ctx.bulk.events(
          id,
          (s) => canUseSelection(ctx.principal, s),
          () => noSelection(id),
        );
      }),
    resolve: (event) => event,
  }),
);
