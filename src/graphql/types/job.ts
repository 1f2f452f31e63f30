import { canSeeJob } from "../../access/principal.ts";
import type { JobView } from "../../jobs/job-view.ts";
import { builder } from "../builder.ts";
import { visibleJob } from "../tenancy.ts";
import { JobStateEnum } from "./errors.ts";

export const JobRef = builder.objectRef<JobView>("Job");

JobRef.implement({
  fields: (t) => ({
    id: t.exposeID("id", { description: "Unique within its queue" }),
    queue: t.exposeString("queue"),
    name: t.exposeString("name"),
    data: t.expose("data", { type: "JSON" }),
    state: t.field({ type: JobStateEnum, resolve: (j) => j.state }),
    progress: t.expose("progress", {
      type: "JSON",
      nullable: true,
      description: "A number 0..100 or an object, as the processor reported it",
    }),
    attemptsMade: t.exposeInt("attemptsMade"),
    maxAttempts: t.exposeInt("maxAttempts"),
    priority: t.exposeInt("priority"),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    startedAt: t.expose("startedAt", { type: "DateTime", nullable: true }),
    finishedAt: t.expose("finishedAt", { type: "DateTime", nullable: true }),
    result: t.expose("result", { type: "JSON", nullable: true }),
    failedReason: t.exposeString("failedReason", { nullable: true }),
    logs: t.stringList({
      description: "Lines the processor wrote with job.log (at most 1000)",
      resolve: (j, _args, ctx) => ctx.jobs.getLogs(j.queue, j.id),
    }),
    replayOf: t.field({
      type: JobRef,
      nullable: true,
      description: "The job this one replays",
      resolve: async (j, _args, ctx) =>
        j.replayOfId ? visibleJob(ctx.principal, await ctx.loaders.job.load({ queue: j.queue, id: j.replayOfId })) : null,
    }),
    replays: t.field({
      type: [JobRef],
      description: "Jobs that replay this one",
      resolve: async (j, _args, ctx) =>
        (await ctx.loaders.replays.load({ queue: j.queue, id: j.id })).filter((r) => canSeeJob(ctx.principal, r)),
    }),
    tenant: t.exposeString("tenant", { nullable: true, description: "The tenant of the API key that enqueued it, if any" }),
  }),
});

builder.queryField("job", (t) =>
  t.field({
    type: JobRef,
    nullable: true,
    description: "Live state from Redis, else history; null when unknown",
    args: { queue: t.arg.string({ required: true }), id: t.arg.id({ required: true }) },
    // Another tenant's job, or another job than a job token's, answers null like a job that does not exist.
    resolve: async (_root, args, ctx) => visibleJob(ctx.principal, await ctx.loaders.job.load({ queue: args.queue, id: String(args.id) })),
  }),
);
