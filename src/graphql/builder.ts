import SchemaBuilder from "@pothos/core";
import ErrorsPlugin from "@pothos/plugin-errors";
import type { JobControl, JobService, QueueService } from "../jobs/control/index.ts";
import type { EventFeeds } from "../jobs/events/index.ts";
import type { HistoryQueries, JobLoaders, JobStatsQueries } from "../jobs/history/index.ts";

/** What every resolver gets: the domain services and who is asking. */
export interface Context {
  jobs: JobService;
  /** cancel / retry / replay, each writing an operator action. */
  control: JobControl;
  queues: QueueService;
  feeds: EventFeeds;
  /** Paginated reads of history, failed-job audits and operator actions. */
  history: HistoryQueries;
  /** `jobStats`: finished jobs per hour or day, from the history rollups. */
  stats: JobStatsQueries;
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
