import type { JobCounts, QueueView } from "../../jobs/control/index.ts";
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
    counts: t.field({ type: JobCountsRef, resolve: (q) => q.counts }),
    workers: t.exposeInt("workers", { description: "Worker connections currently serving this queue" }),
    jobTypes: t.field({ type: [JobTypeRef], resolve: (q) => q.jobTypes }),
    schedulers: t.field({
      type: [JobSchedulerRef],
      description: "The queue's schedulers ordered by next run: `limit` (1 to 1000) from `offset`. See `schedulerCount`.",
      args: {
        offset: t.arg.int({ required: false, defaultValue: 0 }),
        limit: t.arg.int({ required: false, defaultValue: 1000 }),
      },
      resolve: (q, args, ctx) => withGraphQLErrors(() => ctx.queues.schedulers(q.name, args.offset ?? 0, args.limit ?? 1000)),
    }),
    schedulerCount: t.int({
      description: "How many schedulers the queue holds",
      resolve: (q, _args, ctx) => ctx.queues.schedulerCount(q.name),
    }),
  }),
});

builder.queryFields((t) => ({
  queues: t.field({ type: [QueueRef], resolve: (_root, _args, ctx) => ctx.queues.list() }),
  queue: t.field({
    type: QueueRef,
    nullable: true,
    description: "Null when no such queue",
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => ctx.queues.get(args.name),
  }),
}));
