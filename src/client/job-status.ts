// What a client shows of a job it follows with `jobEvents`: one pure step per event, shared by the
// demo page and the React hook example (examples/client/use-job-progress.ts).
import type { JobEventsSubscription, JobState } from "./generated/graphql.ts";

export type JobEvent = JobEventsSubscription["jobEvents"];

export interface JobStatus {
  /** Undefined until the first event (the SNAPSHOT) arrives. */
  state: JobState | undefined;
  /** 0..100 when the processor reports numbers (demo.sleep does); undefined otherwise. */
  percent: number | undefined;
  /** The processor's progress as reported: a number or an object. */
  progress: unknown;
  result: unknown;
  failedReason: string | null | undefined;
}

export const UNKNOWN_JOB: JobStatus = {
  state: undefined,
  percent: undefined,
  progress: undefined,
  result: undefined,
  failedReason: undefined,
};

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

/** The state an event moves a job to, for events that carry no job (SNAPSHOT and the terminal ones do). */
const STATE_AFTER: Partial<Record<JobEvent["type"], JobState>> = {
  ACTIVE: "ACTIVE",
  WAITING: "WAITING",
  ADDED: "WAITING",
  DELAYED: "DELAYED",
  RETRYING: "WAITING",
  STALLED: "WAITING",
  PROGRESS: "ACTIVE",
  COMPLETED: "COMPLETED",
  FAILED: "FAILED",
  CANCELLED: "CANCELLED",
};

/** A number progress as a whole percentage 0..100; undefined for anything else. */
export function progressPercent(progress: unknown): number | undefined {
  if (typeof progress !== "number" || !Number.isFinite(progress)) return undefined;
  return Math.max(0, Math.min(100, Math.round(progress)));
}

/** The job as it stands after `event`. */
export function applyJobEvent(status: JobStatus, event: JobEvent): JobStatus {
  const progress = event.job?.progress ?? event.progress ?? status.progress;
  return {
    state: event.job?.state ?? STATE_AFTER[event.type] ?? status.state,
    progress,
    percent: progressPercent(progress) ?? status.percent,
    result: event.job?.result ?? status.result,
    failedReason: event.failedReason ?? event.job?.failedReason ?? status.failedReason,
  };
}
