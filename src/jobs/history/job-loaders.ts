import DataLoader from "dataloader";
import type { JobView } from "../job-view.ts";
import { type HistoryQueries, jobKey } from "./history-queries.ts";

/** A job's address: ids are unique only within a queue. */
export interface JobRef {
  queue: string;
  id: string;
}

/** Batched job lookups for one request: N `Job.replayOf` / `Job.replays` / `job` fields cost one query each. */
export interface JobLoaders {
  /** The job from the fresher source (see `fresherView`), or null when neither Redis nor history knows it. */
  job: DataLoader<JobRef, JobView | null, string>;
  /** Jobs whose replayOf is this job, newest first (at most 100). */
  replays: DataLoader<JobRef, JobView[], string>;
  /** History rows with each one replaced by the live job where Redis still holds it (one batch for the page). */
  refresh(rows: readonly JobView[]): Promise<JobView[]>;
}

/** Reads one job live from Redis; null when Redis no longer holds it. */
export type LiveLookup = (queue: string, id: string) => Promise<JobView | null>;

/**
 * The fresher of the two copies of a job. History is a projection written after each change Redis
 * has already made (enqueue, active, progress, completed, failed), so while Redis holds the job its
 * copy is at least as fresh; once the job has left Redis, history is all there is.
 */
export function fresherView(live: JobView | null, stored: JobView | null): JobView | null {
  return live ?? stored;
}

function unique(keys: readonly JobRef[]): JobRef[] {
  const seen = new Map<string, JobRef>();
  for (const k of keys) seen.set(jobKey(k.queue, k.id), k);
  return [...seen.values()];
}

/**
 * Loaders for one request (or one subscription). Caching is off on purpose: batching is what saves
 * the queries, and a memo would hand a long-lived subscription the state of its first event
 * forever; each batch removes its own duplicate keys instead.
 */
export function createJobLoaders(live: LiveLookup, history: HistoryQueries): JobLoaders {
  const options = { cache: false, cacheKeyFn: (k: JobRef) => jobKey(k.queue, k.id) } as const;

  const liveLoader = new DataLoader<JobRef, JobView | null, string>(async (keys) => {
    const found = new Map<string, JobView | null>();
    await Promise.all(unique(keys).map(async (k) => found.set(jobKey(k.queue, k.id), await live(k.queue, k.id))));
    return keys.map((k) => found.get(jobKey(k.queue, k.id)) ?? null);
  }, options);

  const storedLoader = new DataLoader<JobRef, JobView | null, string>(async (keys) => {
    const found = await history.getMany(unique(keys));
    return keys.map((k) => found.get(jobKey(k.queue, k.id)) ?? null);
  }, options);

  // Redis first; history only for the jobs Redis no longer holds (one query for all of them).
  const job = new DataLoader<JobRef, JobView | null, string>(async (keys) => {
    const lives = await liveLoader.loadMany(keys);
    const missing = keys.filter((_k, i) => lives[i] === null);
    const stored = await storedLoader.loadMany(missing);
    const storedByKey = new Map(missing.map((k, i) => [jobKey(k.queue, k.id), stored[i]]));
    return keys.map((k, i) => {
      const l = lives[i];
      const s = storedByKey.get(jobKey(k.queue, k.id));
      if (l instanceof Error) return l;
      if (s instanceof Error) return s;
      return fresherView(l ?? null, s ?? null);
    });
  }, options);

  const replays = new DataLoader<JobRef, JobView[], string>(async (keys) => {
    const found = await history.replaysOfMany(unique(keys));
    return keys.map((k) => found.get(jobKey(k.queue, k.id)) ?? []);
  }, options);

  return {
    job,
    replays,
    refresh: async (rows) => {
      const lives = await liveLoader.loadMany(rows.map((r) => ({ queue: r.queue, id: r.id })));
      return rows.map((row, i) => {
        const l = lives[i];
        if (l instanceof Error) throw l;
        return fresherView(l ?? null, row) ?? row;
      });
    },
  };
}

/**
 * The same loaders, made on first use. Every request and every subscription gets a context, and
 * most never load a job (a subscription holds its context for as long as it lives), so they cost
 * one small object until then.
 */
export function lazyJobLoaders(live: LiveLookup, history: HistoryQueries): JobLoaders {
  return new LazyJobLoaders(live, history);
}

class LazyJobLoaders implements JobLoaders {
  private made: JobLoaders | null = null;

  private readonly live: LiveLookup;
  private readonly history: HistoryQueries;

  constructor(live: LiveLookup, history: HistoryQueries) {
    this.live = live;
    this.history = history;
  }

  private get loaders(): JobLoaders {
    this.made ??= createJobLoaders(this.live, this.history);
    return this.made;
  }

  get job() {
    return this.loaders.job;
  }

  get replays() {
    return this.loaders.replays;
  }

  refresh(rows: readonly JobView[]): Promise<JobView[]> {
    return this.loaders.refresh(rows);
  }
}
