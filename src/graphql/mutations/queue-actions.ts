import type { QueueView, SchedulerView } from "../../jobs/control/index.ts";
import { ForbiddenError, NotFoundError, ValidationError } from "../../jobs/errors.ts";
import { builder } from "../builder.ts";
import { actingAs, assertQueueVisible } from "../tenancy.ts";
import { JobSchedulerRef } from "../types/job-scheduler.ts";
import { QueueRef } from "../types/queue.ts";

const QueueActionSuccess = builder.objectRef<{ queue: QueueView }>("QueueActionSuccess").implement({
  fields: (t) => ({ queue: t.field({ type: QueueRef, resolve: (r) => r.queue }) }),
});

const JobSchedulerSuccess = builder.objectRef<{ scheduler: SchedulerView }>("JobSchedulerSuccess").implement({
  fields: (t) => ({ scheduler: t.field({ type: JobSchedulerRef, resolve: (r) => r.scheduler }) }),
});

const UpsertJobSchedulerInput = builder.inputType("UpsertJobSchedulerInput", {
  fields: (t) => ({
    queue: t.string({ required: true }),
    id: t.id({ required: true }),
    name: t.string({ required: true }),
    data: t.field({ type: "JSON", required: true }),
    pattern: t.string({ description: "Cron pattern; exactly one of pattern and everyMs" }),
    everyMs: t.int(),
    tz: t.string({ description: "IANA time zone of the cron pattern, e.g. Europe/Paris" }),
    limit: t.int({ description: "At most this many jobs (1 to 1000000000), then the scheduler stops" }),
    startDate: t.field({ type: "DateTime", description: "No job before it" }),
    endDate: t.field({ type: "DateTime", description: "No job after it; must be in the future and after startDate" }),
  }),
});

// The errors plugin builds one union per result name, so the fields sharing a union share it.
const queueErrors = {
  types: [NotFoundError, ForbiddenError],
  union: { name: "QueueActionResult" },
  result: { name: "QueueActionSuccess" },
};
const schedulerErrors = {
  types: [ValidationError, NotFoundError, ForbiddenError],
  union: { name: "JobSchedulerResult" },
  result: { name: "JobSchedulerSuccess" },
};

builder.mutationFields((t) => ({
  pauseQueue: t.field({
    type: QueueActionSuccess,
    errors: queueErrors,
    description: "Jobs of a paused queue stay WAITING; nothing starts until it is resumed. Active jobs run to the end.",
    args: { name: t.arg.string({ required: true }) },
    resolve: async (_root, args, ctx) => {
      assertQueueVisible(ctx.principal, args.name);
      return { queue: await ctx.queues.pause(args.name, actingAs(ctx.principal)) };
    },
  }),
  resumeQueue: t.field({
    type: QueueActionSuccess,
    errors: queueErrors,
    args: { name: t.arg.string({ required: true }) },
    resolve: async (_root, args, ctx) => {
      assertQueueVisible(ctx.principal, args.name);
      return { queue: await ctx.queues.resume(args.name, actingAs(ctx.principal)) };
    },
  }),
  upsertJobScheduler: t.field({
    type: JobSchedulerSuccess,
    errors: schedulerErrors,
    description:
      "Creates or replaces a scheduler that enqueues `name` with `data` on a cron `pattern` (optionally in `tz`) or every `everyMs`.",
    args: { input: t.arg({ type: UpsertJobSchedulerInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      assertQueueVisible(ctx.principal, input.queue);
      return { scheduler: await ctx.queues.upsertScheduler({ ...input, id: String(input.id), data: input.data }, actingAs(ctx.principal)) };
    },
  }),
  removeJobScheduler: t.field({
    type: JobSchedulerSuccess,
    errors: schedulerErrors,
    description: "No job of that scheduler starts after the call returns, including the next one already waiting as a delayed job.",
    args: { queue: t.arg.string({ required: true }), id: t.arg.id({ required: true }) },
    resolve: async (_root, args, ctx) => {
      assertQueueVisible(ctx.principal, args.queue);
      return { scheduler: await ctx.queues.removeScheduler(args.queue, String(args.id), actingAs(ctx.principal)) };
    },
  }),
}));
