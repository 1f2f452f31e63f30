import SchemaBuilder from "@pothos/core";
import ErrorsPlugin from "@pothos/plugin-errors";
import type { EventFeeds } from "../jobs/event-feed.ts";
import type { JobService } from "../jobs/job-service.ts";

/** What every resolver gets: the domain services and who is asking. */
export interface Context {
  jobs: JobService;
  feeds: EventFeeds;
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
