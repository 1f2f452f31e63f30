import { describe, expect, it } from "vitest";
import { applyJobEvent, type JobEvent, progressPercent, UNKNOWN_JOB } from "../src/client/job-status.ts";

// The pure step the demo page and the React hook example apply to each jobEvents event.

const event = (e: Partial<JobEvent> & Pick<JobEvent, "type">): JobEvent => ({
  id: "1-0",
  at: "2026-01-01T00:00:00.000Z",
  progress: null,
  failedReason: null,
  resync: false,
  job: null,
  ...e,
});

describe("applyJobEvent", () => {
  it("follows a job from its SNAPSHOT through progress to COMPLETED", () => {
    const steps = [
      event({ type: "SNAPSHOT", progress: 0, job: { id: "7", state: "WAITING", progress: 0, result: null, failedReason: null } }),
      event({ type: "ACTIVE" }),
      event({ type: "PROGRESS", progress: 49.6 }),
      // An object progress is kept as reported; the bar stays where the last number put it.
      event({ type: "PROGRESS", progress: { rows: 10 } }),
      event({ type: "COMPLETED", job: { id: "7", state: "COMPLETED", progress: 100, result: { steps: 2 }, failedReason: null } }),
    ];
    const seen = [];
    let status = UNKNOWN_JOB;
    for (const e of steps) {
      status = applyJobEvent(status, e);
      seen.push([status.state, status.percent]);
    }
    expect(seen).toEqual([
      ["WAITING", 0],
      ["ACTIVE", 0],
      ["ACTIVE", 50],
      ["ACTIVE", 50],
      ["COMPLETED", 100],
    ]);
    expect(status.result).toEqual({ steps: 2 });
  });

  it("keeps the reason of a retry and of the final failure", () => {
    let status = applyJobEvent(UNKNOWN_JOB, event({ type: "RETRYING", failedReason: "boom 1" }));
    expect(status).toMatchObject({ state: "WAITING", failedReason: "boom 1" });
    status = applyJobEvent(
      status,
      event({
        type: "FAILED",
        failedReason: "boom 2",
        job: { id: "7", state: "FAILED", progress: 0, result: null, failedReason: "boom 2" },
      }),
    );
    expect(status).toMatchObject({ state: "FAILED", failedReason: "boom 2", percent: 0 });
  });
});

describe("progressPercent", () => {
  it("clamps and rounds numbers, and ignores everything else", () => {
    expect([-5, 0, 33.4, 99.5, 100, 250].map(progressPercent)).toEqual([0, 0, 33, 100, 100, 100]);
    for (const v of [Number.NaN, Number.POSITIVE_INFINITY, "50", null, undefined, { percent: 50 }, [50]])
      expect(progressPercent(v)).toBeUndefined();
  });
});
