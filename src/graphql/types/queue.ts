import { canSeeQueue } from "../../access/principal.ts";
import { type JobCounts, type QueueView, toJobCounts } from "../../jobs/control/index.ts";
import { withGraphQLErrors } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { JobSchedulerRef } from "./job-scheduler.ts";

const JobCountsRef = builder.objectRef<JobCounts>("JobCounts").implement({
  fields: (t) => ({
    waiting: t.exposeInt("waiting"),
    prioritized: t.exposeInt("prioritized"),
    delayed: t.exposeInt("delayed"),
    active: t.exposeInt("active"),
    completed: t.exposeInt("completed"),
    failed: t.exposeInt("failed"),
  }),
});

const JobTypeRef = builder.objectRef<{ name: string; payloadSchema: unknown }>("JobType").implement({
  fields: (t) => ({
    name: t.exposeString("name"),
    payloadSchema: t.expose("payloadSchema", {
      type: "JSON",
      description: "JSON Schema of `data`, derived from the job type's own validator",
    }),
  }),
});

export const QueueRef = builder.objectRef<QueueView>("Queue").implement({
  fields: (t) => ({
    name: t.exposeString("name"),
    paused: t.exposeBoolean("paused"),
    counts: t.field({
      type: JobCountsRef,
      description: "A tenant-bound key counts its own jobs only (from history, which may lag Redis by a moment)",
      resolve: async (q, _args, ctx) => {
        if (ctx.principal.tenant === null) return q.counts;
        return toJobCounts(await ctx.history.tenantCounts(q.name, ctx.principal.tenant));
      },
    }),
    workers: t.exposeInt("workers", { description: "Worker connections currently serving this queue" }),
    jobTypes: t.field({ type: [JobTypeRef], resolve: (q) => q.jobTypes }),
    schedulers: t.field({
      type: [JobSchedulerRef],
      description:
        "The queue's schedulers ordered by next run: `limit` (1 to 1000) from `offset`. See `schedulerCount`. A tenant-bound key sees the schedulers its tenant created",
      args: {
        offset: t.arg.int({ required: false, defaultValue: 0 }),
        limit: t.arg.int({ required: false, defaultValue: 1000 }),
      },
      resolve: (q, args, ctx) =>
        withGraphQLErrors(() => ctx.queues.schedulers(q.name, args.offset ?? 0, args.limit ?? 1000, ctx.principal.tenant)),
    }),
    schedulerCount: t.int({
      description: "How many schedulers the queue holds (a tenant-bound key: its tenant's)",
      resolve: (q, _args, ctx) => ctx.queues.schedulerCount(q.name, ctx.principal.tenant),
    }),
  }),
});

builder.queryFields((t) => ({
  queues: t.field({
    type: [QueueRef],
    description: "The queues the caller may see (a queue-limited key: its queues)",
    resolve: async (_root, _args, ctx) => (await ctx.queues.list()).filter((q) => canSeeQueue(ctx.principal, q.name)),
  }),
  queue: t.field({
    type: QueueRef,
    nullable: true,
    description: "Null when no such queue",
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => (canSeeQueue(ctx.principal, args.name) ? ctx.queues.get(args.name) : null),
  }),
}));
