// A React hook over the typed client: the live status of one job, from its `jobEvents`
// subscription. Typechecked in CI (tsconfig.browser.json); copy it into your app.
//
//   const client = useMemo(() => createClient({ url: "wss://api.example.com/graphql",
//     connectionParams: { authorization: `Bearer ${token}` } }), [token]);
//   const { state, percent } = useJobProgress(client, "demo", jobId);
import type { Client } from "graphql-ws/client";
import { useEffect, useState } from "react";
import { JobEventsDocument } from "../../src/client/generated/graphql.ts";
import { applyJobEvent, type JobStatus, UNKNOWN_JOB } from "../../src/client/job-status.ts";
import { watch } from "../../src/client/request.ts";

export interface JobProgress extends JobStatus {
  /** The subscription ended: the job reached COMPLETED, FAILED or CANCELLED (or `error` is set). */
  done: boolean;
  /** Why following the job stopped early: NOT_FOUND, a refused credential, a lost connection. */
  error: Error | undefined;
}

const START: JobProgress = { ...UNKNOWN_JOB, done: false, error: undefined };

/**
 * Follows one job: re-renders on each event (SNAPSHOT, ACTIVE, PROGRESS, the terminal one) and
 * unsubscribes on unmount or when `queue`/`id` change. No `id` (not enqueued yet): stays at START.
 */
export function useJobProgress(client: Client, queue: string, id: string | undefined): JobProgress {
  const [progress, setProgress] = useState<JobProgress>(START);
  useEffect(() => {
    setProgress(START);
    if (!id) return;
    const events = watch(client, JobEventsDocument, { queue, id });
    let stopped = false;
    void (async () => {
      try {
        for await (const { jobEvents } of events) {
          if (stopped) return;
          setProgress((current) => ({ ...applyJobEvent(current, jobEvents), done: false, error: undefined }));
        }
        if (!stopped) setProgress((current) => ({ ...current, done: true }));
      } catch (err) {
        if (!stopped) setProgress((current) => ({ ...current, done: true, error: err instanceof Error ? err : new Error(String(err)) }));
      }
    })();
    return () => {
      stopped = true;
      // Ends the generator, which completes the subscription on the server.
      void events.return(undefined);
    };
  }, [client, queue, id]);
  return progress;
}
