import { type OperationDefinitionNode, parse, print, validate } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { schema } from "../src/graphql/schema.ts";
import { EXAMPLE_OPERATIONS } from "../src/server/app.ts";
import { gql, subscribeSse } from "../src/testing/graphql.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// The operations GraphiQL opens with, as a user runs them one by one, against a real worker.

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ worker: true });
});

afterAll(async () => {
  await stack?.stop();
});

const document = parse(EXAMPLE_OPERATIONS);

/** One operation of the playground's document, as GraphiQL sends it when that one is run. */
function operation(name: string): string {
  const found = document.definitions.find((d): d is OperationDefinitionNode => d.kind === "OperationDefinition" && d.name?.value === name);
  if (!found) throw new Error(`no operation ${name} in the playground's examples`);
  return print(found);
}

interface FlowEvent {
  type: string;
  childrenCounts: { processed: number; pending: number; failed: number; ignored: number } | null;
  job: { state: string; result: unknown } | null;
}

describe("the playground's example operations", () => {
  it("are valid against the schema", () => {
    expect(validate(schema, document)).toEqual([]);
    expect(document.definitions.map((d) => (d.kind === "OperationDefinition" ? d.name?.value : d.kind))).toEqual([
      "Enqueue",
      "Watch",
      "Fanout",
      "WatchFlow",
    ]);
  });

  it("Fanout then WatchFlow: one event per child with the counts (k of 5), then the parent completes with their results", {
    timeout: 120_000,
  }, async () => {
    // Nothing runs until the subscription is in place, so it sees every child end.
    await stack.queue.pause();
    let events: FlowEvent[] = [];
    try {
      const { body } = await gql<{ enqueueFlow: { __typename: string; job: { id: string; state: string }; jobs: { name: string }[] } }>(
        stack.api.url,
        operation("Fanout"),
      );
      expect(body.errors).toBeUndefined();
      const flow = body.data?.enqueueFlow;
      expect(flow?.__typename).toBe("EnqueueFlowSuccess");
      expect(flow?.job.state).toBe("WAITING_CHILDREN");
      expect(flow?.jobs.map((j) => j.name)).toEqual(["fanout", "sleep", "sleep", "sleep", "sleep", "sleep"]);
      const sub = await subscribeSse<{ jobEvents: FlowEvent }>(stack.api.url, operation("WatchFlow"), { id: flow?.job.id });
      expect(sub.status).toBe(200);
      while (sub.results.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      await stack.queue.resume();
      await sub.done;
      expect(sub.results.flatMap((r) => r.errors ?? [])).toEqual([]);
      events = sub.results.map((r) => r.data?.jobEvents as FlowEvent);
    } finally {
      await stack.queue.resume();
    }
    expect(events[0]?.type).toBe("SNAPSHOT");
    const children = events.filter((e) => e.type === "CHILD_COMPLETED");
    expect(children.map((e) => e.childrenCounts?.processed)).toEqual([1, 2, 3, 4, 5]);
    expect(children.every((e) => e.childrenCounts && e.childrenCounts.processed + e.childrenCounts.pending === 5)).toBe(true);
    const last = events.at(-1);
    expect(last?.type).toBe("COMPLETED");
    expect(last?.job).toEqual({ state: "COMPLETED", result: { label: "playground", children: 5, steps: 25 } });
  });
});
