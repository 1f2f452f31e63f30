import { withGraphQLErrors } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { accessFilter } from "../tenancy.ts";
import { connectionOf } from "../types/connection.ts";
import { JobStateEnum } from "../types/errors.ts";
import { JobRef } from "../types/job.ts";

export const JobFilter = builder.inputType("JobFilter", {
  description: "Every field optional; the ones given must all match",
  fields: (t) => ({
    queue: t.string(),
    name: t.string(),
    states: t.field({ type: [JobStateEnum] }),
    createdAfter: t.field({ type: "DateTime", description: "Exclusive; must be earlier than createdBefore" }),
    createdBefore: t.field({ type: "DateTime", description: "Exclusive" }),
    search: t.string({ description: "Case-insensitive substring over the job id and failedReason (at least 3 characters)" }),
    dataContains: t.field({
      type: "JSON",
      description: 'JSON containment over the payload: {"customerId": 42} matches every job whose data has that pair',
    }),
    tenant: t.string({ description: "Admin keys only; a tenant-bound key always sees its own tenant alone" }),
  }),
});

export const JobConnection = connectionOf("Job", JobRef);

builder.queryField("jobs", (t) =>
  t.field({
    type: JobConnection,
    description:
      "History, newest first (createdAt desc, then id desc). Keyset cursors: pages stay stable while jobs arrive. " +
      "Filters apply to history; each job shows its freshest state (live from Redis while it is there). " +
      'Bad arguments are GraphQL errors with extensions.code "VALIDATION".',
    args: {
      filter: t.arg({ type: JobFilter }),
      first: t.arg.int({ defaultValue: 20, description: "1 to MAX_PAGE_SIZE (100 unless configured)" }),
      after: t.arg.string({ description: "The endCursor of the previous page" }),
    },
    resolve: (_root, args, ctx) =>
      withGraphQLErrors(async () => {
        // A tenant-bound key sees its tenant alone: naming another tenant finds what a tenant with no
        // jobs would (nothing); a queue-limited key, its queues alone.
        const access = accessFilter(ctx.principal);
        const filter = { ...args.filter, ...access };
        if (access.tenant && args.filter?.tenant && args.filter.tenant !== access.tenant) filter.queues = [];
        const page = await ctx.history.listJobs(filter, { first: args.first, after: args.after });
        const fresh = await ctx.loaders.refresh(page.edges.map((e) => e.node));
        return { ...page, edges: page.edges.map((e, i) => ({ cursor: e.cursor, node: fresh[i] ?? e.node })) };
      }),
  }),
);
