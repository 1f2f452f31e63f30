import type { JobStatsBucketView, JobStatsView } from "../../jobs/history/index.ts";
import { withGraphQLErrors } from "../as-graphql-error.ts";
import { builder } from "../builder.ts";
import { assertQueueVisible } from "../tenancy.ts";

const StatsBucketEnum = builder.enumType("StatsBucket", {
  description: "The width of jobStats' time buckets (UTC)",
  values: ["HOUR", "DAY"] as const,
});

const JobStatsBucketRef = builder.objectRef<JobStatsBucketView>("JobStatsBucket").implement({
  description: "Jobs that finished in [start, end): counts by final state, failure ratio and duration percentiles",
  fields: (t) => ({
    start: t.expose("start", { type: "DateTime" }),
    end: t.expose("end", { type: "DateTime" }),
    completed: t.exposeInt("completed"),
    failed: t.exposeInt("failed", { description: "Failed for good (no attempts left)" }),
    cancelled: t.exposeInt("cancelled"),
    failureRatio: t.exposeFloat("failureRatio", {
      nullable: true,
      description: "failed / (completed + failed); cancellations left out. Null when neither happened",
    }),
    durationP50Ms: t.exposeFloat("durationP50Ms", {
      nullable: true,
      description:
        "Median of finishedAt - startedAt over the jobs that started, in ms, from a histogram with 5%-wide buckets: within 5% + 1 ms of percentile_cont over the same rows (the same for p95 and p99). Null when none started",
    }),
    durationP95Ms: t.exposeFloat("durationP95Ms", { nullable: true }),
    durationP99Ms: t.exposeFloat("durationP99Ms", { nullable: true }),
  }),
});

const JobStatsRef = builder.objectRef<JobStatsView>("JobStats").implement({
  fields: (t) => ({
    queue: t.exposeString("queue"),
    name: t.exposeString("name", { nullable: true }),
    tenant: t.exposeString("tenant", { nullable: true }),
    from: t.expose("from", { type: "DateTime" }),
    to: t.expose("to", { type: "DateTime" }),
    bucket: t.field({ type: StatsBucketEnum, resolve: (s) => s.bucket }),
    buckets: t.field({
      type: [JobStatsBucketRef],
      description: "Every bucket of [from, to), oldest first, those without jobs at zero",
      resolve: (s) => s.buckets,
    }),
    totals: t.field({ type: JobStatsBucketRef, description: "The whole range [from, to)", resolve: (s) => s.totals }),
  }),
});

builder.queryField("jobStats", (t) =>
  t.field({
    type: JobStatsRef,
    description:
      "Finished jobs of a queue (optionally one job name and one tenant) by finishedAt, per hour or day (UTC): counts by final state, failure ratio, duration p50 / p95 / p99, and totals. " +
      "`from` and `to` are whole hours; at most 1,000 buckets. Read from rollups kept by the history writes, so it stays fast on any amount of history. " +
      'Bad arguments are GraphQL errors with extensions.code "VALIDATION".',
    args: {
      queue: t.arg.string({ required: true }),
      name: t.arg.string(),
      tenant: t.arg.string(),
      from: t.arg({ type: "DateTime", required: true }),
      to: t.arg({ type: "DateTime", required: true, description: "Exclusive" }),
      bucket: t.arg({ type: StatsBucketEnum, defaultValue: "HOUR" }),
    },
    resolve: (_root, args, ctx) =>
      withGraphQLErrors(async () => {
        // A queue the key may not see answers as an unknown one; a tenant-bound key's stats are its tenant's (`tenant` ignored).
        assertQueueVisible(ctx.principal, args.queue);
        return ctx.stats.stats({
          queue: args.queue,
          name: args.name,
          tenant: ctx.principal.tenant ?? args.tenant,
          from: args.from,
          to: args.to,
          bucket: args.bucket ?? "HOUR",
        });
      }),
  }),
);
