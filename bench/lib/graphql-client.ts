/** POSTs one operation to the API with the bench's key; throws on HTTP errors and GraphQL errors. */
export async function post<T = Record<string, unknown>>(
  url: string,
  apiKey: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<T> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: unknown[] };
  if (res.status !== 200 || body.errors || !body.data) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body).slice(0, 500)}`);
  return body.data;
}

/** Enqueues `count` demo.noop jobs through the API, `parallel` at a time; returns their ids in order. */
export async function enqueueNoops(
  url: string,
  apiKey: string,
  count: number,
  data: Record<string, unknown>,
  options: { parallel?: number; delayMs?: (i: number) => number; tenant?: (i: number) => string } = {},
): Promise<string[]> {
  const parallel = options.parallel ?? 32;
  const ids: string[] = new Array(count);
  let next = 0;
  const query = `mutation($data: JSON!, $delay: Int, $tenant: String) { enqueueJob(input: { queue: "demo", name: "noop", data: $data, delayMs: $delay, tenant: $tenant }) { __typename ... on EnqueueJobSuccess { job { id } } } }`;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const i = next++;
        const r = await post<{ enqueueJob: { job?: { id: string } } }>(url, apiKey, query, {
          data,
          delay: options.delayMs?.(i) ?? null,
          tenant: options.tenant?.(i) ?? null,
        });
        if (!r.enqueueJob.job) throw new Error(`enqueue refused: ${JSON.stringify(r)}`);
        ids[i] = r.enqueueJob.job.id;
      }
    }),
  );
  return ids;
}
