// Helpers for the fault drills (test/chaos/*.chaos.ts): timed enqueues and a subscriber that
// reconnects with `since`, as a real client would.
import { createClient } from "graphql-ws";
import { afterAll, beforeAll } from "vitest";
import WebSocket from "ws";
import { createTestDatabase } from "../../src/testing/database.ts";
import { killAll } from "../../src/testing/processes.ts";
import { deletePrefix, uniquePrefix } from "../../src/testing/redis.ts";

export interface EnqueueAttempt {
  startedAt: number;
  ms: number;
  id: string | null;
  error: string | null;
}

/** One enqueueJob over HTTP; never throws, and gives up after `timeoutMs` (which then counts as a hang). */
export async function timedEnqueue(url: string, data: Record<string, unknown>, name = "noop", timeoutMs = 10_000): Promise<EnqueueAttempt> {
  const startedAt = Date.now();
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        query:
          'mutation($name: String!, $data: JSON!) { enqueueJob(input: { queue: "demo", name: $name, data: $data }) { __typename ... on EnqueueJobSuccess { job { id } } } }',
        variables: { name, data },
      }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.json()) as { data?: { enqueueJob?: { job?: { id: string } } }; errors?: { message: string }[] };
    const id = body.data?.enqueueJob?.job?.id ?? null;
    return { startedAt, ms: Date.now() - startedAt, id, error: id ? null : JSON.stringify(body.errors ?? body).slice(0, 200) };
  } catch (err) {
    return { startedAt, ms: Date.now() - startedAt, id: null, error: err instanceof Error ? err.message : String(err) };
  }
}

export interface DrillEvent {
  id: string;
  type: string;
  jobId: string;
  progress: unknown;
}

/**
 * Follows one job (or a whole queue when `jobId` is null) across server failures: on an error or a
 * close it reconnects to `url()` with `since` = the last event id it got, until the job's terminal
 * event or `stop()`.
 */
export function followWithResume(url: () => string, jobId: string | null) {
  const events: DrillEvent[] = [];
  let reconnects = 0;
  let stopped = false;
  let terminal = false;
  let dispose: (() => void) | null = null;
  const query = jobId
    ? 'subscription($id: ID!, $since: String) { jobEvents(queue: "demo", id: $id, since: $since) { id type jobId progress } }'
    : 'subscription($since: String) { queueEvents(queue: "demo", since: $since) { id type jobId progress } }';
  const connect = () => {
    if (stopped || terminal) return;
    const last = events.at(-1)?.id ?? null;
    const client = createClient({ url: url().replace(/^http/, "ws"), webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    let settled = false;
    const again = () => {
      if (settled) return;
      settled = true;
      void client.dispose();
      if (stopped || terminal) return;
      reconnects++;
      setTimeout(connect, 200);
    };
    const unsubscribe = client.subscribe<{ jobEvents?: DrillEvent; queueEvents?: DrillEvent }>(
      { query, variables: { id: jobId, since: last } },
      {
        next: (r) => {
          const e = r.data?.jobEvents ?? r.data?.queueEvents;
          if (!e) return;
          events.push(e);
          if (jobId && ["COMPLETED", "FAILED", "CANCELLED"].includes(e.type)) terminal = true;
        },
        error: again,
        complete: () => {
          if (!terminal) again();
        },
      },
    );
    dispose = () => {
      unsubscribe();
      void client.dispose();
    };
  };
  connect();
  return {
    events,
    get reconnects() {
      return reconnects;
    },
    get terminal() {
      return terminal;
    },
    stop() {
      stopped = true;
      dispose?.();
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 50 ms until it is true; resolves with the ms it took, or rejects after `limitMs`. */
export async function within(limitMs: number, check: () => boolean | Promise<boolean>, what: string): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await sleep(50);
  }
  return Date.now() - t0;
}

/**
 * A database and a key prefix for one drill file, removed (with any process it left running) after
 * its tests. Call at the top level of the file.
 */
export function drillScratch(): { prefix: string; databaseUrl(): string } {
  const prefix = uniquePrefix();
  let db: { url: string; drop(): Promise<void> } | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await killAll();
    await deletePrefix(prefix);
    await db?.drop();
  });
  return {
    prefix,
    databaseUrl: () => {
      if (!db) throw new Error("the drill's database is made in beforeAll");
      return db.url;
    },
  };
}
