import { createClient } from "graphql-ws";
import WebSocket from "ws";

export interface GraphQLResponse<T = Record<string, unknown>> {
  data?: T | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** POSTs one operation; `target` is a URL or an in-process fetch handler. */
export async function gql<T = Record<string, unknown>>(
  target: string | ((r: Request) => Promise<Response> | Response),
  query: string,
  variables: Record<string, unknown> = {},
): Promise<{ status: number; body: GraphQLResponse<T> }> {
  const request = new Request(typeof target === "string" ? target : "http://test/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/graphql-response+json, application/json" },
    body: JSON.stringify({ query, variables }),
  });
  const response = typeof target === "string" ? await fetch(request) : await target(request);
  return { status: response.status, body: (await response.json()) as GraphQLResponse<T> };
}

export interface Collected<T> {
  /** Every `next` payload, in order. */
  results: GraphQLResponse<T>[];
  /** Resolves when the server completes the subscription or it errors. */
  done: Promise<void>;
  /** Resolves once at least `n` results have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

function collector<T>(): {
  c: Omit<Collected<T>, "close" | "done">;
  push(r: GraphQLResponse<T>): void;
} {
  const results: GraphQLResponse<T>[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  return {
    c: {
      results,
      waitFor: (n, timeoutMs = 20_000) =>
        new Promise<void>((resolve, reject) => {
          if (results.length >= n) return resolve();
          const timer = setTimeout(
            () => reject(new Error(`only ${results.length} of ${n} results after ${timeoutMs} ms: ${JSON.stringify(results)}`)),
            timeoutMs,
          );
          waiters.push({
            n,
            resolve: () => {
              clearTimeout(timer);
              resolve();
            },
          });
        }),
    },
    push: (r) => {
      results.push(r);
      for (const w of waiters.filter((w) => results.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    },
  };
}

/** Runs a subscription over graphql-ws (`graphql-transport-ws`) and collects what it yields. */
export async function subscribeWs<T = Record<string, unknown>>(
  httpUrl: string,
  query: string,
  variables: Record<string, unknown> = {},
  connectionParams: Record<string, unknown> = {},
): Promise<Collected<T>> {
  const client = createClient({
    url: httpUrl.replace(/^http/, "ws"),
    webSocketImpl: WebSocket,
    connectionParams,
    retryAttempts: 0,
    lazy: false,
    // A closed socket surfaces through `done`; don't also print it.
    onNonLazyError: () => {},
  });
  const { c, push } = collector<T>();
  const done = new Promise<void>((resolve, reject) => {
    client.subscribe<T>(
      { query, variables },
      {
        next: (r) => push(r as GraphQLResponse<T>),
        error: (err) => {
          // graphql-ws passes GraphQL errors as an array; keep them as a result so tests can assert on them.
          if (Array.isArray(err)) {
            push({ errors: err as GraphQLResponse["errors"] });
            resolve();
          } else
            reject(
              err instanceof Error
                ? err
                : new Error(`WebSocket closed: ${JSON.stringify((err as { code?: number; reason?: string })?.code)}`),
            );
        },
        complete: () => resolve(),
      },
    );
  });
  done.catch(() => {});
  return { ...c, done, close: async () => client.dispose() };
}

/** Runs a subscription over SSE (`Accept: text/event-stream`) and collects what it yields. */
export async function subscribeSse<T = Record<string, unknown>>(
  httpUrl: string,
  query: string,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<Collected<T> & { status: number }> {
  const abort = new AbortController();
  const response = await fetch(httpUrl, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream", ...headers },
    body: JSON.stringify({ query, variables }),
    signal: abort.signal,
  });
  const { c, push } = collector<T>();
  const done = (async () => {
    if (!response.body) return;
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      const reader = response.body.getReader();
      for (;;) {
        const { value, done: ended } = await reader.read();
        if (ended) return;
        buffer += decoder.decode(value, { stream: true });
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf("\n\n");
          const event = /^event: (.*)$/m.exec(message)?.[1];
          const data = message
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trimStart())
            .join("\n");
          if (event === "complete") return;
          if (event === "next" || (!event && data)) push(JSON.parse(data) as GraphQLResponse<T>);
        }
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    }
  })();
  done.catch(() => {});
  return { ...c, status: response.status, done, close: async () => abort.abort() };
}

/** Enqueues one job on the `demo` queue through the API and returns its id; throws with the answer otherwise. */
export async function enqueueDemo(
  target: string | ((r: Request) => Promise<Response> | Response),
  name: string,
  data: unknown,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const { body } = await gql<{ enqueueJob: { job?: { id: string } } }>(
    target,
    `mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { ... on EnqueueJobSuccess { job { id } } ... on UserError { message } } }`,
    { input: { queue: "demo", name, data, ...extra } },
  );
  const id = body.data?.enqueueJob.job?.id;
  if (!id) throw new Error(`enqueue failed: ${JSON.stringify(body)}`);
  return id;
}
