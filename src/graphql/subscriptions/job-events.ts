import { JOB_EVENT_TYPES, type JobEvent } from "../../jobs/events/index.ts";
import { withGraphQLErrors } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { assertJobVisible, assertQueueVisible, visibleJob } from "../tenancy.ts";
import { JobRef } from "../types/job.ts";
import { ChildrenCountsRef } from "../types/job-flow.ts";

const JobEventType = builder.enumType("JobEventType", { values: JOB_EVENT_TYPES });

const JobEventRef = builder.objectRef<JobEvent>("JobEvent").implement({
  fields: (t) => ({
    id: t.exposeString("id", { description: "Increases within a queue; pass it back as `since` to resume with no gap" }),
    type: t.field({ type: JobEventType, resolve: (e) => e.type }),
    queue: t.exposeString("queue"),
    jobId: t.exposeID("jobId"),
    at: t.expose("at", { type: "DateTime" }),
    progress: t.expose("progress", { type: "JSON", nullable: true, description: "PROGRESS and SNAPSHOT" }),
    failedReason: t.exposeString("failedReason", { nullable: true, description: "FAILED and RETRYING" }),
    job: t.field({ type: JobRef, nullable: true, description: "SNAPSHOT and the terminal events", resolve: (e) => e.job }),
    log: t.exposeString("log", { nullable: true, description: "LOG: the line the processor wrote with job.log" }),
    child: t.field({
      type: JobRef,
      nullable: true,
      description: "CHILD_COMPLETED / CHILD_FAILED (a flow parent's stream): the child that finished",
      resolve: async (e, _args, ctx) =>
        e.child ? visibleJob(ctx.principal, await ctx.loaders.job.load({ queue: e.child.queue, id: e.child.id })) : null,
    }),
    childrenCounts: t.field({
      type: ChildrenCountsRef,
      nullable: true,
      description: 'CHILD_COMPLETED / CHILD_FAILED: the parent\'s children counts right after it ("7 of 10": processed of the sum)',
      resolve: (e) => e.childrenCounts ?? null,
    }),
    resync: t.boolean({
      description: "True on a SNAPSHOT sent instead of the events after `since`, because the stream no longer holds them",
      resolve: (e) => e.resync ?? false,
    }),
  }),
});

builder.subscriptionField("jobEvents", (t) =>
  t.field({
    type: JobEventRef,
    description:
      "Without `since`: a SNAPSHOT of the job first, then its live events. With `since`: every event of the job after that id, then live ones. Completes after the terminal event.",
    args: { queue: t.arg.string({ required: true }), id: t.arg.id({ required: true }), since: t.arg.string() },
    subscribe: (_root, args, ctx) =>
      withGraphQLErrors(async () => {
        await assertJobVisible(ctx.principal, ctx.jobs, args.queue, String(args.id));
        return ctx.feeds.job(args.queue, String(args.id), args.since);
      }),
    resolve: (event) => event,
  }),
);

builder.subscriptionField("queueEvents", (t) =>
  t.field({
    type: JobEventRef,
    description: "Every event of the queue (optionally only some types), resumable the same way.",
    args: {
      queue: t.arg.string({ required: true }),
      since: t.arg.string(),
      types: t.arg({ type: [JobEventType] }),
    },
    subscribe: (_root, args, ctx) =>
      withGraphQLErrors(async () => {
        assertQueueVisible(ctx.principal, args.queue);
        // A tenant-bound key's events are filtered where they fan out: one Redis subscription per queue, whatever the tenants.
        return ctx.feeds.queue(args.queue, args.since, args.types, ctx.principal.tenant);
      }),
    resolve: (event) => event,
  }),
);
