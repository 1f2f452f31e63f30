import { createHash, randomBytes } from "node:crypto";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GraphQLResponse, gql } from "../src/testing/graphql.ts";
import { queryRows } from "../src/testing/private-postgres.ts";
import { bullPrefix, testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/until.ts";

// Replay of a flow parent (issue #20) when children have secret payload fields (`vault.check`'s
// `token`): every node of the new tree runs with its real values, read as a single-job replay reads
// them (from Redis while it holds the job, else from the sealed copy in job_secret); a node whose copy
// is missing or does not open refuses the whole replay, naming the node and the field, nothing enqueued.
// Real Redis, PostgreSQL and a worker process.

const ADMIN = "test-admin-key-0123456789";
const T1 = "token-of-the-child-0123";
const T2 = "token-of-the-grandchild-4567";
const sha = (s: string) => createHash("sha256").update(s).digest("hex");
let stack: TestStack;
const queues: Queue[] = [];

beforeAll(async () => {
  stack = await startTestStack({
    env: {
      ADMIN_API_KEY: ADMIN,
      JOBS_MODULE: "./test/fixtures/jobs-modules/flow-secrets.ts",
      PAYLOAD_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString("base64")}`,
      LOG_LEVEL: "silent",
    },
  });
}, 90_000);

afterAll(async () => {
  for (const q of queues) await q.close();
  await stack?.stop();
});

function queueOf(name: string): Queue {
  const q = new Queue(name, { connection: { url: testRedisUrl }, prefix: bullPrefix(stack.prefix, name) });
  queues.push(q);
  return q;
}

const as = (r: Request) => {
  r.headers.set("authorization", `Bearer ${ADMIN}`);
  return stack.api.app.fetch(r);
};
async function call<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const { body } = await gql<T>(as, query, variables);
  const res = body as GraphQLResponse<T>;
  expect(res.errors).toBeUndefined();
  return res.data as T;
}
const sql = <T extends Record<string, unknown>>(text: string, params: unknown[] = []) => queryRows<T>(stack.databaseUrl, text, params);

type Node = { id: string; queue: string; name: string; data: Record<string, unknown> };

/** A demo.fanout root with a vault.check child (T1) and a demo.fanout child with a vault.check child (T2); its nodes in pre-order. */
async function enqueueTree(label: string): Promise<Node[]> {
  const { enqueueFlow } = await call<{ enqueueFlow: { __typename: string; jobs?: Node[] } }>(
    `mutation ($input: FlowInput!) { enqueueFlow(input: $input) { __typename ... on EnqueueFlowSuccess { jobs { id queue name data } } } }`,
    {
      input: {
        queue: "demo",
        name: "fanout",
        data: { label },
        children: [
          { queue: "vault", name: "check", data: { token: T1, label: `${label}/child` } },
          {
            queue: "demo",
            name: "fanout",
            data: { label: `${label}/sub` },
            children: [{ queue: "vault", name: "check", data: { token: T2, label: `${label}/grandchild` } }],
          },
        ],
      },
    },
  );
  expect(enqueueFlow.__typename).toBe("EnqueueFlowSuccess");
  const jobs = enqueueFlow.jobs ?? [];
  // What anyone reads of a job shows the secret masked.
  expect(jobs.filter((j) => j.queue === "vault").map((j) => j.data.token)).toEqual(["[redacted]", "[redacted]"]);
  return jobs;
}

const stateOf = async (queue: string, id: string) =>
  (await sql<{ state: string }>("SELECT state::text FROM job_history WHERE queue = $1 AND id = $2", [queue, id]))[0]?.state;

async function completed(root: { queue: string; id: string }): Promise<void> {
  await until(
    `flow ${root.queue}:${root.id} COMPLETED`,
    () => stateOf(root.queue, root.id),
    (s) => s === "COMPLETED",
    { timeoutMs: 60_000 },
  );
}

/** The vault.check jobs of the tree under demo:`rootId`: their label, the digest their processor returned, and what each replays. */
async function vaultResults(rootId: string): Promise<{ id: string; label: string; digest: string | null; replayOf: string | null }[]> {
  return sql(
    `WITH RECURSIVE t AS (SELECT queue, id FROM job_history WHERE parent_queue = 'demo' AND parent_id = $1
       UNION ALL SELECT h.queue, h.id FROM t JOIN job_history h ON h.parent_queue = t.queue AND h.parent_id = t.id)
     SELECT h.id, h.data->>'label' AS label, h.result->>'digest' AS digest, h.replay_of_id AS "replayOf"
     FROM t JOIN job_history h USING (queue, id) WHERE h.queue = 'vault' ORDER BY label`,
    [rootId],
  );
}

const REPLAY = /* GraphQL */ `
  mutation ($id: ID!) {
    replayJob(queue: "demo", id: $id) {
      __typename
      ... on JobActionSuccess { job { id state replayOf { id } } }
      ... on ValidationError { message issues { path message } }
      ... on UserError { message }
    }
  }
`;
type ReplayAnswer = {
  __typename: string;
  job?: { id: string; state: string; replayOf: { id: string } };
  issues?: { path: string[]; message: string }[];
};
const replay = async (id: string) => (await call<{ replayJob: ReplayAnswer }>(REPLAY, { id })).replayJob;

/** Takes the tree's jobs out of Redis (history keeps them): a replay then reads history and job_secret. */
async function loseFromRedis(jobs: Node[]): Promise<void> {
  for (const j of [...jobs].reverse()) await queueOf(j.queue).remove(j.id);
  for (const j of jobs) expect(await queueOf(j.queue).getJob(j.id)).toBeUndefined();
}

describe("replay of a flow whose children have secret payload fields (PAYLOAD_ENCRYPTION_KEYS)", () => {
  it("every replayed node runs with its real values: read from Redis while it holds the jobs, else from their sealed copies", async () => {
    const original = await enqueueTree("first");
    const root = original[0] as Node;
    await completed(root);
    expect((await vaultResults(root.id)).map((r) => [r.label, r.digest])).toEqual([
      ["first/child", sha(T1)],
      ["first/grandchild", sha(T2)],
    ]);

    // 1. Redis still holds the finished tree (kept 24 h): the real values come from there.
    const fromRedis = await replay(root.id);
    expect(fromRedis).toMatchObject({ __typename: "JobActionSuccess", job: { state: "WAITING_CHILDREN", replayOf: { id: root.id } } });
    await completed({ queue: "demo", id: fromRedis.job?.id as string });
    const originals = new Set(original.filter((j) => j.queue === "vault").map((j) => j.id));
    const again = await vaultResults(fromRedis.job?.id as string);
    expect(again.map((r) => [r.label, r.digest])).toEqual([
      ["first/child", sha(T1)],
      ["first/grandchild", sha(T2)],
    ]);
    expect(new Set(again.map((r) => r.replayOf))).toEqual(originals);

    // 2. Redis no longer has them: history's masked rows, the secrets restored from job_secret.
    await loseFromRedis(original);
    const fromHistory = await replay(root.id);
    expect(fromHistory.__typename).toBe("JobActionSuccess");
    const copy = fromHistory.job?.id as string;
    await completed({ queue: "demo", id: copy });
    const restored = await vaultResults(copy);
    expect(restored.map((r) => [r.label, r.digest])).toEqual([
      ["first/child", sha(T1)],
      ["first/grandchild", sha(T2)],
    ]);
    // Each new child keeps a sealed copy of its own (so it can be replayed in turn), never the value in clear.
    const sealed = await sql<{ job_id: string; sealed: string }>(
      "SELECT job_id, sealed FROM job_secret WHERE queue = 'vault' AND job_id = ANY($1)",
      [restored.map((r) => r.id)],
    );
    expect(sealed.map((r) => r.job_id).sort()).toEqual(restored.map((r) => r.id).sort());
    expect(sealed.every((r) => !r.sealed.includes(T1) && !r.sealed.includes(T2))).toBe(true);
    // And history keeps every replayed row masked.
    const rows = await sql<{ token: string }>("SELECT data->>'token' AS token FROM job_history WHERE queue = 'vault'");
    expect(rows.every((r) => r.token === "[redacted]")).toBe(true);

    // The replay of the replay (its jobs out of Redis too) restores from the replay's own sealed copies.
    const copyNodes = await sql<Node>(
      `WITH RECURSIVE t AS (SELECT queue, id FROM job_history WHERE queue = 'demo' AND id = $1
         UNION ALL SELECT h.queue, h.id FROM t JOIN job_history h ON h.parent_queue = t.queue AND h.parent_id = t.id)
       SELECT queue, id FROM t`,
      [copy],
    );
    await loseFromRedis(copyNodes);
    const second = await replay(copy);
    expect(second.__typename).toBe("JobActionSuccess");
    await completed({ queue: "demo", id: second.job?.id as string });
    expect((await vaultResults(second.job?.id as string)).map((r) => r.digest)).toEqual([sha(T1), sha(T2)]);
  });

  it("a child whose sealed copy is missing or does not open refuses the whole replay, naming the node and the field; nothing is enqueued", async () => {
    const original = await enqueueTree("second");
    const root = original[0] as Node;
    await completed(root);
    await loseFromRedis(original);
    const [child, grandchild] = original.filter((j) => j.queue === "vault") as [Node, Node];
    // The child's copy altered (it no longer opens), the grandchild's gone.
    await sql(
      `UPDATE job_secret
       SET sealed = regexp_replace(sealed, '\\.(.)([^.]*)$', '.' || CASE WHEN substring(sealed from '\\.(.)[^.]*$') = 'A' THEN 'B' ELSE 'A' END || '\\2')
       WHERE queue = 'vault' AND job_id = $1`,
      [child.id],
    );
    await sql("DELETE FROM job_secret WHERE queue = 'vault' AND job_id = $1", [grandchild.id]);
    const count = async () =>
      (
        await sql<{ jobs: number; actions: number; secrets: number }>(
          `SELECT (SELECT count(*)::int FROM job_history) AS jobs, (SELECT count(*)::int FROM operator_action) AS actions,
                  (SELECT count(*)::int FROM job_secret) AS secrets`,
        )
      )[0];
    const before = await count();
    const waitingBefore = await Promise.all(["demo", "vault"].map((q) => queueOf(q).getJobCounts()));

    const refused = await replay(root.id);
    expect(refused.__typename).toBe("ValidationError");
    const issues = refused.issues ?? [];
    expect(issues).toHaveLength(2);
    const about = (id: string) => issues.find((i) => i.message.includes(`vault job "${id}"`));
    // Where each node sits in the replayed tree: the child under the root, the grandchild under the sub-flow.
    expect(about(child.id)?.path).toEqual(["children", expect.stringMatching(/^[01]$/), "data", "token"]);
    expect(about(child.id)?.message).toContain("could not be decrypted (tampered or wrong key");
    expect(about(grandchild.id)?.path).toEqual(["children", expect.stringMatching(/^[01]$/), "children", "0", "data", "token"]);
    expect(about(grandchild.id)?.message).toContain("no encrypted copy was kept");
    expect(about(grandchild.id)?.message).toMatch(/^is a secret field of vault job "\d+" \(in the tree under the replayed job\)/);

    // All or nothing: no row, no audit, no sealed copy, no job in Redis.
    expect(await count()).toEqual(before);
    expect(await Promise.all(["demo", "vault"].map((q) => queueOf(q).getJobCounts()))).toEqual(waitingBefore);
  });
});
