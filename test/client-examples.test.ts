import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProcess } from "../src/testing/processes.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// examples/client/follow-job.ts, run as a user runs it, against a real API and worker.

let stack: TestStack;

beforeAll(async () => {
  // The API runs only persisted operations: the example sends hashes (the typed client).
  stack = await startTestStack({ worker: true, env: { PERSISTED_OPERATIONS: "only" } });
});

afterAll(() => stack?.stop());

describe("examples/client/follow-job.ts", () => {
  it("enqueues a job and prints its progress up to 100 % and its result", async () => {
    // Paused until the example has subscribed, so that it sees every step rather than a finished job.
    await stack.queue.pause();
    const run = await startProcess("examples/client/follow-job.ts", { API_URL: stack.api.url }, /^SNAPSHOT /m, 60_000, ["4", "50"]);
    await stack.queue.resume();
    expect(await run.exited).toBe(0);
    const lines = run.stdout().trim().split("\n");
    expect(lines[0]).toMatch(/^enqueued demo job \S+$/);
    expect(lines[1]).toMatch(/^SNAPSHOT /);
    expect(lines.filter((l) => l.startsWith("PROGRESS")).map((l) => l.split(/\s+/).at(-2))).toEqual(["25", "50", "75", "100"]);
    expect(lines.at(-1)).toBe('done: {"steps":4}');
  });

  it("prints the ValidationError's issues and exits 1 for data the job type refuses", async () => {
    const run = await startProcess("examples/client/follow-job.ts", { API_URL: stack.api.url }, null, 30_000, ["0", "-5"]);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toMatch(/^enqueue refused: .*data\.steps: .* data\.stepMs: /);
  });
});
