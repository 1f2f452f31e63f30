import { canSeeJob, canSeeQueue } from "../../access/principal.ts";
import type { ChildrenCounts } from "../../jobs/bullmq/index.ts";
import { withGraphQLErrors } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { JobConnection } from "../queries/jobs.ts";
import { accessFilter, visibleJob } from "../tenancy.ts";
import { JobRef } from "./job.ts";

// Flows (enqueueFlow): a job's parent and children. Every job of a flow has the root's tenant, so a
// caller who sees a job sees its relatives; a queue-limited key sees those of its queues only.

export const ChildrenCountsRef = builder.objectRef<ChildrenCounts>("ChildrenCounts").implement({
  description:
    "A flow parent's children by outcome: BullMQ's own counts while Redis holds the parent, else history's. processed + pending + failed + ignored is the number of children, less those removed by removeDependencyOnFailure",
  fields: (t) => ({
    processed: t.exposeInt("processed", { description: "Completed" }),
    pending: t.exposeInt("pending", {
      description: "Not finished; a child that failed without a parent policy stays here (the parent waits for its retry)",
    }),
    failed: t.exposeInt("failed", { description: "Failed and failed the parent (failParentOnFailure)" }),
    ignored: t.exposeInt("ignored", {
      description: "Failed, and the parent went on without it (ignoreDependencyOnFailure)",
    }),
  }),
});

builder.objectFields(JobRef, (t) => ({
  parent: t.field({
    type: JobRef,
    nullable: true,
    description: "The job this one is a child of (enqueueFlow); null for a job without a parent",
    resolve: async (j, _args, ctx) =>
      j.parentQueue && j.parentId ? visibleJob(ctx.principal, await ctx.loaders.job.load({ queue: j.parentQueue, id: j.parentId })) : null,
  }),
  children: t.field({
    type: JobConnection,
    description:
      "The jobs this one waits for (enqueueFlow), each in its freshest state, in the order of `jobs`; empty for a job without children",
    args: {
      first: t.arg.int({ defaultValue: 20, description: "1 to MAX_PAGE_SIZE (100 unless configured)" }),
      after: t.arg.string({ description: "The endCursor of the previous page" }),
    },
    resolve: (j, args, ctx) =>
      withGraphQLErrors(async () => {
        const filter = { parent: { queue: j.queue, id: j.id }, ...accessFilter(ctx.principal) };
        const page = await ctx.history.listJobs(filter, { first: args.first, after: args.after });
        const fresh = await ctx.loaders.refresh(page.edges.map((e) => e.node));
        const edges = page.edges.map((e, i) => ({ cursor: e.cursor, node: fresh[i] ?? e.node }));
        // A job token sees its own job only: its children answer as if there were none.
        return { ...page, edges: edges.filter((e) => canSeeJob(ctx.principal, e.node)) };
      }),
  }),
  childrenCounts: t.field({
    type: ChildrenCountsRef,
    description: "How many of its children finished, and how (all zero for a job without children)",
    resolve: (j, _args, ctx) => ctx.jobs.childrenCounts(j.queue, j.id),
  }),
  childrenValues: t.field({
    type: "JSON",
    description:
      'The results of its completed children, keyed "<queue>:<id>" (what the processor of the parent reads with ctx.childrenValues())',
    resolve: async (j, _args, ctx) => {
      const values = await ctx.jobs.childrenValues(j.queue, j.id);
      if (ctx.principal.queues === null) return values;
      return Object.fromEntries(Object.entries(values).filter(([key]) => canSeeQueue(ctx.principal, key.slice(0, key.lastIndexOf(":")))));
    },
  }),
}));
