import SchemaBuilder from "@pothos/core";
import ErrorsPlugin from "@pothos/plugin-errors";
import type { EventFeeds } from "../jobs/event-feed.ts";
import type { HistoryQueries } from "../jobs/history-queries.ts";
import type { JobControl } from "../jobs/job-control.ts";
import type { JobLoaders } from "../jobs/job-loaders.ts";
import type { JobService } from "../jobs/job-service.ts";
import type { QueueService } from "../jobs/queue-service.ts";

/** What every resolver gets: the domain services and who is asking. */
export interface Context {
  jobs: JobService;
  /** cancel / retry / replay, each writing an operator action. */
  control: JobControl;
  queues: QueueService;
  feeds: EventFeeds;
  /** Paginated reads of history, failed-job audits and operator actions. */
  history: HistoryQueries;
  /** Batched job lookups, made fresh for each request. */
  loaders: JobLoaders;
  /** The API key's name, or "anonymous" while auth is open. */
  actor: string;
}

export const builder = new SchemaBuilder<{
  Context: Context;
  DefaultFieldNullability: false;
  DefaultInputFieldRequiredness: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
}>({
  plugins: [ErrorsPlugin],
  defaultFieldNullability: false,
  errors: { directResult: true },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
