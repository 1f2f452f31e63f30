// Drill: the API process is killed (kill -9) while clients follow jobs over graphql-ws. They
// reconnect to a new API process with `since` = the last event id they got, and none misses its
// terminal event or a progress step.
import { describe, expect, it } from "vitest";
import { startApi, startWorker } from "../../src/testing/processes.ts";
import { drillScratch, followWithResume, sleep, timedEnqueue, within } from "./drill-client.ts";

const JOBS = 20;
const STEPS = 10;

const scratch = drillScratch();
const prefix = scratch.prefix;

describe("API restart drill", () => {
  it("subscribers reconnect with `since` and miss no event, terminal ones included", async () => {
    const env = {
      DATABASE_URL: scratch.databaseUrl(),
      QUEUE_PREFIX: prefix,
      LOG_LEVEL: "error",
      RATE_LIMIT_PER_MINUTE: "0",
      ...(process.env.TEST_REDIS_URL ? { REDIS_URL: process.env.TEST_REDIS_URL } : {}),
    };
    const urlOf = (p: { stdout(): string }) => /GraphQL API ready at (\S+)/.exec(p.stdout())?.[1] ?? "";
    let api = await startApi(env);
    let url = urlOf(api);
    await startWorker({ ...env, WORKER_CONCURRENCY: String(JOBS) });

    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const r = await timedEnqueue(url, { steps: STEPS, stepMs: 400 }, "sleep");
      expect(r.error).toBeNull();
      ids.push(r.id as string);
    }
    const followers = ids.map((id) => followWithResume(() => url, id));
    await within(20_000, () => followers.every((f) => f.events.some((e) => e.type === "PROGRESS")), "every follower sees progress");

    const killedAt = Date.now();
    await api.stop("SIGKILL");
    await sleep(500);
    api = await startApi(env);
    url = urlOf(api);
    const restartMs = Date.now() - killedAt;

    await within(60_000, () => followers.every((f) => f.terminal), "every follower gets its terminal event");
    for (const f of followers) f.stop();

    const figures = {
      jobs: JOBS,
      apiDownMs: restartMs,
      reconnects: followers.reduce((a, f) => a + f.reconnects, 0),
      terminal: followers.filter((f) => f.events.at(-1)?.type === "COMPLETED").length,
      duplicates: followers.reduce((a, f) => a + f.events.length - new Set(f.events.map((e) => e.id)).size, 0),
    };
    console.log(`api-restart drill: ${JSON.stringify(figures)}`);
    expect(figures.reconnects).toBeGreaterThanOrEqual(JOBS);
    expect(figures.terminal).toBe(JOBS);
    expect(figures.duplicates).toBe(0);
    for (const f of followers) {
      // Every progress step 10..100 once, in order, around the restart.
      const progress = f.events.filter((e) => e.type === "PROGRESS").map((e) => e.progress);
      const seen = f.events.find((e) => e.type === "SNAPSHOT");
      const firstExpected =
        seen && typeof (seen as { progress: unknown }).progress === "number" ? (seen as { progress: number }).progress / 10 + 1 : 1;
      const expected = Array.from({ length: STEPS - firstExpected + 1 }, (_, i) => (firstExpected + i) * 10);
      expect(progress).toEqual(expected);
    }
  });
});
