import { GraphQLError } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { asGraphQLError, MASKED_ERROR_MESSAGE, maskUnexpected } from "../src/graphql/as-graphql-error.ts";
import { keySpace } from "../src/jobs/bullmq/index.ts";
import { ForbiddenError, InvalidStateError, NotFoundError, SlowSubscriberError, ValidationError } from "../src/jobs/errors.ts";
import { channels } from "../src/jobs/events/index.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { createTestDatabase } from "../src/testing/database.ts";
import { gql, subscribeSse, subscribeWs } from "../src/testing/graphql.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";
import { until } from "../src/testing/until.ts";

// One mapping of the domain's errors to GraphQL errors for HTTP, SSE and WebSocket.

describe("asGraphQLError / maskUnexpected", () => {
  const cases: [Error, Record<string, unknown>][] = [
    [ValidationError.at(["limit"], "too big"), { code: "VALIDATION", issues: [{ path: ["limit"], message: "too big" }] }],
    [new NotFoundError("no such queue"), { code: "NOT_FOUND" }],
    [new InvalidStateError("already COMPLETED", "COMPLETED"), { code: "INVALID_STATE", state: "COMPLETED" }],
    [new ForbiddenError("no"), { code: "FORBIDDEN" }],
    [new SlowSubscriberError(7), { code: "SLOW_SUBSCRIBER" }],
  ];

  it.each(cases)("maps %s, bare or wrapped by graphql-js, keeping message, code and path", (err, extensions) => {
    for (const thrown of [err, new GraphQLError("wrapped", { originalError: err, path: ["a", 0] })]) {
      const mapped = asGraphQLError(thrown);
      expect(mapped?.message).toBe(err.message);
      expect(mapped?.extensions).toEqual(extensions);
      expect(maskUnexpected(thrown).message).toBe(err.message);
    }
    expect(asGraphQLError(new GraphQLError("wrapped", { originalError: err, path: ["a", 0] }))?.path).toEqual(["a", 0]);
  });

  it("masks anything else, and leaves GraphQL's own errors alone", () => {
    expect(asGraphQLError(new Error("secret connection string"))).toBeNull();
    expect(maskUnexpected(new Error("secret connection string")).message).toBe(MASKED_ERROR_MESSAGE);
    expect(maskUnexpected(new GraphQLError("x", { originalError: new TypeError("secret") })).message).toBe(MASKED_ERROR_MESSAGE);
    expect(maskUnexpected("a string thrown").message).toBe(MASKED_ERROR_MESSAGE);
    const own = new GraphQLError('Cannot query field "nope" on type "Query".');
    expect(maskUnexpected(own)).toBe(own);
  });
});

describe("a subscriber whose buffer overflows", () => {
  const prefix = uniquePrefix();
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let relaying: TestApi;
  let serving: TestApi;

  beforeAll(async () => {
    db = await createTestDatabase();
    const env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, SUBSCRIBER_MAX_BUFFER: "1" };
    // The first instance relays the queue's events; the second gets them over pub/sub, where many
    // arrive at once (one publish batch), more than a buffer of one can hold.
    relaying = await startTestApi(env);
    serving = await startTestApi(env);
  });

  afterAll(async () => {
    await serving?.stop();
    await relaying?.stop();
    await deletePrefix(prefix);
    await db?.drop();
  });

  async function flood() {
    const inputs = Array.from({ length: 200 }, () => ({ queue: "demo", name: "noop", data: {} }));
    const { body } = await gql(relaying.url, `mutation ($inputs: [EnqueueJobInput!]!) { enqueueJobs(inputs: $inputs) { __typename } }`, {
      inputs,
    });
    expect(body.errors).toBeUndefined();
  }

  it("over SSE: the stream ends with the resubscribe message and its code, not Unexpected error.", async () => {
    const sub = await subscribeSse(serving.url, `subscription { queueEvents(queue: "demo", types: [ADDED]) { id } }`);
    expect(sub.status).toBe(200);
    // Subscribed once the API holds a listener on the queue's channel.
    await until("the subscription listens", () => serving.runtime.channels.listenerCount(channels.queue(keySpace(prefix), "demo")) > 0);
    await flood();
    await sub.done;
    const errors = sub.results.flatMap((r) => r.errors ?? []);
    expect(errors, JSON.stringify(sub.results.at(-1))).toHaveLength(1);
    expect(errors[0]?.message).toBe("Subscriber too slow: more than 1 events waiting to be read; resubscribe with `since`");
    expect(errors[0]?.extensions).toMatchObject({ code: "SLOW_SUBSCRIBER" });
  });

  it("over WebSocket: the same error", async () => {
    const sub = await subscribeWs(serving.url, `subscription { queueEvents(queue: "demo", types: [ADDED]) { id } }`);
    await until("the subscription listens", () => serving.runtime.channels.listenerCount(channels.queue(keySpace(prefix), "demo")) > 0);
    await flood();
    const failure = await sub.done.then(
      () => null,
      (err: unknown) => err,
    );
    const errors = [...sub.results.flatMap((r) => r.errors ?? []), ...(Array.isArray(failure) ? failure : failure ? [failure] : [])];
    expect(JSON.stringify(errors)).toContain("resubscribe with `since`");
    expect(JSON.stringify(errors)).not.toContain(MASKED_ERROR_MESSAGE);
  });
});
