// The hook in use: a progress bar for one job. Typechecked in CI with React's types.
import type { Client } from "graphql-ws/client";
import { useJobProgress } from "./use-job-progress.ts";

export function JobProgressBar({ client, queue, id }: { client: Client; queue: string; id: string }) {
  const { state, percent, failedReason, error } = useJobProgress(client, queue, id);
  if (error)
    return (
      <p role="alert">
        Lost job {id}: {error.message}
      </p>
    );
  return (
    <div data-state={state}>
      <progress max={100} value={percent ?? 0} aria-label={`job ${id}`} />
      <span>
        {state ?? "…"} {percent === undefined ? "" : `${percent} %`}
      </span>
      {state === "FAILED" && <p role="alert">{failedReason}</p>}
    </div>
  );
}
