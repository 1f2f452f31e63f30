import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { PayloadCipher, UnsealError } from "../src/jobs/control/index.ts";
import { startTestApi, type TestApi } from "../src/testing/api.ts";
import { configProblems } from "../src/testing/config.ts";
import { gql } from "../src/testing/graphql.ts";
import { queryRows } from "../src/testing/private-postgres.ts";
import { bullPrefix, testRedisUrl } from "../src/testing/redis.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/until.ts";

// Secret payload fields (webhook.deliver's headers) are masked in history. With PAYLOAD_ENCRYPTION_KEYS
// their real values are also kept encrypted (job_secret), so a replay or a recovery from history
// delivers them again; without it (or when the copy does not decrypt) neither runs with "[redacted]":
// a replay is a ValidationError naming the field, a recovery marks the job FAILED + NOT_RECOVERED.
// Real Redis, PostgreSQL and a worker process delivering to a real HTTP receiver.

const ADMIN = "test-admin-key-0123456789";
const SECRET = "Bearer downstream-token-kept-encrypted";
const key = () => randomBytes(32).toString("base64");
const K1 = key();
// Recovery passes only look at rows older than an hour: the tests age the rows they mean to recover.
const quiet = { RECOVERY_GRACE_MS: "3600000", RECOVERY_INTERVAL_MS: "0", LOG_LEVEL: "silent" };

let keyed: TestStack;
let unkeyed: TestStack;
let server: http.Server;
let base = "";
const received: { path: string; authorization: string | undefined }[] = [];
const queues: Queue[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    received.push({ path: req.url ?? "", authorization: req.headers.authorization });
    req.resume();
    req.on("end", () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const common = { ...quiet, ADMIN_API_KEY: ADMIN, WEBHOOK_SECRET: "webhook-secret-0123456789", WEBHOOK_ALLOW_PRIVATE: "true" };
  [keyed, unkeyed] = await Promise.all([
    startTestStack({ env: { ...common, PAYLOAD_ENCRYPTION_KEYS: `k1:${K1}` }, workerEnv: { WORKER_QUEUES: "webhook" } }),
    startTestStack({ env: common, worker: false }),
  ]);
}, 90_000);

afterAll(async () => {
  for (const q of queues) await q.close();
  await keyed?.stop();
  await unkeyed?.stop();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

function webhookQueue(stack: TestStack): Queue {
  const q = new Queue("webhook", { connection: { url: testRedisUrl }, prefix: bullPrefix(stack.prefix, "webhook") });
  queues.push(q);
  return q;
}

const as = (api: TestApi) => (r: Request) => {
  r.headers.set("authorization", `Bearer ${ADMIN}`);
  return api.app.fetch(r);
};
const call = async (api: TestApi, query: string, variables: Record<string, unknown> = {}) => (await gql(as(api), query, variables)).body;

/** Enqueues a webhook delivery (delayed by an hour unless `delayMs` says otherwise) and returns its id. */
async function deliver(api: TestApi, urlPath: string, delayMs = 3_600_000): Promise<string> {
  const body = await call(
    api,
    `mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { ... on EnqueueJobSuccess { job { id data } } ... on UserError { message } } }`,
    {
      input: {
        queue: "webhook",
        name: "deliver",
        delayMs,
        data: { url: `${base}${urlPath}`, payload: { n: 1 }, headers: { authorization: SECRET } },
      },
    },
  );
  const job = (body.data as { enqueueJob: { job?: { id: string; data: { headers: unknown } } } }).enqueueJob.job;
  if (!job) throw new Error(JSON.stringify(body));
  expect(job.data.headers).toBe("[redacted]");
  return job.id;
}

const REPLAY = `mutation ($id: ID!, $patch: JSON) { replayJob(queue: "webhook", id: $id, dataPatch: $patch) {
  __typename ... on JobActionSuccess { job { id data } } ... on ValidationError { message issues { path message } } ... on UserError { message } } }`;
type ReplayAnswer = {
  replayJob: { __typename: string; job?: { id: string; data: { headers: unknown } }; issues?: { path: string[]; message: string }[] };
};
const replay = async (api: TestApi, id: string, patch?: unknown) =>
  ((await call(api, REPLAY, { id, ...(patch === undefined ? {} : { patch }) })).data as ReplayAnswer).replayJob;

const delivered = (urlPath: string) =>
  until(
    `a delivery to ${urlPath}`,
    async () => received.filter((r) => r.path === urlPath),
    (r) => r.length > 0,
  );

/** The job as Redis no longer has it (its history row stays as it was). */
async function loseFromRedis(stack: TestStack, id: string): Promise<void> {
  await webhookQueue(stack).remove(id);
  expect(await webhookQueue(stack).getJob(id)).toBeUndefined();
}

/** Ages a pending row past the recovery grace period, due at once. */
const ageRow = (stack: TestStack, id: string) =>
  queryRows(
    stack.databaseUrl,
    "UPDATE job_history SET created_at = created_at - interval '2 hours', delay_ms = 0 WHERE queue = 'webhook' AND id = $1",
    [id],
  );

const recoveryPass = (api: TestApi) =>
  until(
    "a recovery pass of our own",
    () => api.runtime.recovery.runOnce("test"),
    (p) => p !== null,
  );

const historyOf = async (stack: TestStack, id: string) =>
  (
    await queryRows<{ state: string; failed_reason: string | null; data: { headers: unknown } }>(
      stack.databaseUrl,
      "SELECT state::text, failed_reason, data FROM job_history WHERE queue = 'webhook' AND id = $1",
      [id],
    )
  )[0];

describe("secret payload fields with PAYLOAD_ENCRYPTION_KEYS", () => {
  it("are kept encrypted beside the masked history row, never in clear", async () => {
    const id = await deliver(keyed.api, "/kept");
    const [row] = await queryRows<{ key_id: string; sealed: string }>(
      keyed.databaseUrl,
      "SELECT key_id, sealed FROM job_secret WHERE queue = 'webhook' AND job_id = $1",
      [id],
    );
    expect(row?.key_id).toBe("k1");
    expect(row?.sealed).toMatch(/^v1\.k1\.[\w-]{16}\.[\w-]{22}\.[\w-]+$/);
    expect((await historyOf(keyed, id))?.data.headers).toBe("[redacted]");
    const everything = await queryRows<{ t: string }>(
      keyed.databaseUrl,
      "SELECT data::text AS t FROM job_history UNION ALL SELECT sealed FROM job_secret UNION ALL SELECT coalesce(details::text, '') FROM operator_action",
    );
    expect(everything.map((r) => r.t).join("\n")).not.toContain("downstream-token");
  });

  it("a replay from history delivers the real value to the processor (and keeps the replay's own copy)", async () => {
    const id = await deliver(keyed.api, "/replay-source");
    await loseFromRedis(keyed, id);
    const answer = await replay(keyed.api, id, { url: `${base}/replayed` });
    expect(answer.__typename).toBe("JobActionSuccess");
    expect(answer.job?.data.headers).toBe("[redacted]");
    expect((await delivered("/replayed")).map((r) => r.authorization)).toEqual([SECRET]);
    const copies = await queryRows(keyed.databaseUrl, "SELECT 1 FROM job_secret WHERE queue = 'webhook' AND job_id = $1", [answer.job?.id]);
    expect(copies).toHaveLength(1);
  });

  it("a recovery after Redis lost the job delivers the real value, and its views stay masked", async () => {
    const id = await deliver(keyed.api, "/recovered");
    await loseFromRedis(keyed, id);
    await ageRow(keyed, id);
    const pass = await recoveryPass(keyed.api);
    expect(pass).toMatchObject({ recovered: 1, notRecovered: 0 });
    expect((await delivered("/recovered")).map((r) => r.authorization)).toEqual([SECRET]);
    const job = await call(keyed.api, `{ job(queue: "webhook", id: "${id}") { state data } }`);
    expect((job.data as { job: { data: { headers: unknown } } }).job.data.headers).toBe("[redacted]");
  });

  it("a tampered or transplanted ciphertext does not open: the replay is refused and the recovery marks the job", async () => {
    const tampered = await deliver(keyed.api, "/tampered");
    await loseFromRedis(keyed, tampered);
    // Flip the first character of the ciphertext part (the last base64url character may only carry
    // padding bits, so flipping it can leave the bytes as they were).
    await queryRows(
      keyed.databaseUrl,
      `UPDATE job_secret
       SET sealed = regexp_replace(sealed, '\\.(.)([^.]*)$', '.' || CASE WHEN substring(sealed from '\\.(.)[^.]*$') = 'A' THEN 'B' ELSE 'A' END || '\\2')
       WHERE queue = 'webhook' AND job_id = $1`,
      [tampered],
    );
    const refused = await replay(keyed.api, tampered);
    expect(refused.__typename).toBe("ValidationError");
    expect(refused.issues).toEqual([
      {
        path: ["data", "headers"],
        message:
          'is a secret field that history keeps masked and their secret payload fields could not be decrypted (tampered or wrong key, key id "k1"); give it again in data or dataPatch',
      },
    ]);
    // Another job's (valid) ciphertext copied onto this one: bound to its job, it does not open either.
    const donor = await deliver(keyed.api, "/donor");
    const moved = await deliver(keyed.api, "/transplant");
    await loseFromRedis(keyed, moved);
    await queryRows(
      keyed.databaseUrl,
      "UPDATE job_secret SET sealed = (SELECT sealed FROM job_secret WHERE queue = 'webhook' AND job_id = $1) WHERE queue = 'webhook' AND job_id = $2",
      [donor, moved],
    );
    expect((await replay(keyed.api, moved)).__typename).toBe("ValidationError");

    await ageRow(keyed, tampered);
    const pass = await recoveryPass(keyed.api);
    expect(pass).toMatchObject({ notRecovered: 1 });
    const row = await historyOf(keyed, tampered);
    expect(row?.state).toBe("FAILED");
    expect(row?.failed_reason).toContain("tampered or wrong key");
    expect(await webhookQueue(keyed).getJob(tampered)).toBeUndefined();
    expect(received.some((r) => r.path === "/tampered")).toBe(false);
  });

  it("another API with the wrong key cannot open them; with the old key kept second (rotation) it can, and seals anew with the first", async () => {
    const id = await deliver(keyed.api, "/rotated");
    await loseFromRedis(keyed, id);
    const { PAYLOAD_ENCRYPTION_KEYS: _, ...env } = keyed.env;
    const wrong = await startTestApi({ ...env, PAYLOAD_ENCRYPTION_KEYS: `k1:${key()}` });
    const unknown = await startTestApi({ ...env, PAYLOAD_ENCRYPTION_KEYS: `k2:${key()}` });
    const rotated = await startTestApi({ ...env, PAYLOAD_ENCRYPTION_KEYS: `k2:${key()},k1:${K1}` });
    try {
      expect((await replay(wrong, id)).issues?.[0]?.message).toContain('(tampered or wrong key, key id "k1")');
      expect((await replay(unknown, id)).issues?.[0]?.message).toContain('(unknown key, key id "k1")');
      const ok = await replay(rotated, id, { url: `${base}/rotated-replay` });
      expect(ok.__typename).toBe("JobActionSuccess");
      expect((await delivered("/rotated-replay")).map((r) => r.authorization)).toEqual([SECRET]);
      const [copy] = await queryRows<{ key_id: string }>(
        keyed.databaseUrl,
        "SELECT key_id FROM job_secret WHERE queue = 'webhook' AND job_id = $1",
        [ok.job?.id],
      );
      expect(copy?.key_id).toBe("k2");
    } finally {
      await Promise.all([wrong.stop(), unknown.stop(), rotated.stop()]);
    }
  });
});

describe("secret payload fields without PAYLOAD_ENCRYPTION_KEYS", () => {
  it("keeps no encrypted copy; a replay from history is a ValidationError naming the field, unless the value is given again", async () => {
    const id = await deliver(unkeyed.api, "/unkeyed");
    expect(await queryRows(unkeyed.databaseUrl, "SELECT 1 FROM job_secret")).toEqual([]);
    await loseFromRedis(unkeyed, id);
    const refused = await replay(unkeyed.api, id);
    expect(refused).toEqual({
      __typename: "ValidationError",
      message: expect.any(String),
      issues: [
        {
          path: ["data", "headers"],
          message:
            "is a secret field that history keeps masked and PAYLOAD_ENCRYPTION_KEYS is not set, so they cannot be decrypted; give it again in data or dataPatch",
        },
      ],
    });
    // "[redacted]" given on purpose is refused too: it is never a value to send.
    expect((await replay(unkeyed.api, id, { headers: "[redacted]" })).__typename).toBe("ValidationError");
    const given = await replay(unkeyed.api, id, { headers: { authorization: "Bearer given-again" } });
    expect(given.__typename).toBe("JobActionSuccess");
    const inRedis = await webhookQueue(unkeyed).getJob(given.job?.id ?? "");
    expect((inRedis?.data as { headers: unknown } | undefined)?.headers).toEqual({ authorization: "Bearer given-again" });
  });

  it("a recovery leaves the job out: history FAILED with the reason, an operator action NOT_RECOVERED, a metric", async () => {
    const id = await deliver(unkeyed.api, "/unkeyed-recovery");
    await loseFromRedis(unkeyed, id);
    await ageRow(unkeyed, id);
    const pass = await recoveryPass(unkeyed.api);
    expect(pass).toMatchObject({ recovered: 0, notRecovered: 1 });
    expect(await webhookQueue(unkeyed).getJob(id)).toBeUndefined();
    const row = await historyOf(unkeyed, id);
    expect(row?.state).toBe("FAILED");
    expect(row?.failed_reason).toBe(
      "Not recovered after Redis lost it: its secret payload fields (headers) are masked in history and PAYLOAD_ENCRYPTION_KEYS is not set, so they cannot be decrypted; replay it giving them again",
    );
    const [action] = await queryRows<{ actor: string; details: { secretPaths: string[]; state: string } }>(
      unkeyed.databaseUrl,
      "SELECT actor, details FROM operator_action WHERE action = 'NOT_RECOVERED' AND job_id = $1",
      [id],
    );
    expect(action).toMatchObject({ actor: "system:recovery", details: { secretPaths: ["headers"], state: "DELAYED" } });
    const metrics = await (await fetch(unkeyed.api.url.replace(/\/graphql$/, "/metrics"))).text();
    expect(metrics).toMatch(/^jobs_not_recovered_total\{queue="webhook"\} 1$/m);
  });
});

describe("PAYLOAD_ENCRYPTION_KEYS and the cipher", () => {
  it("refuses malformed keys at start, naming the entry", () => {
    const good = key();
    const cases: [string, string][] = [
      ["nocolon", "entry 1 must be <id>:<base64 key>"],
      [`a:${good},a:${good}`, 'entry 2: the id "a" appears twice'],
      [`bad.id:${good}`, "entry 1: the id must be 1-32 letters, digits, _ or -"],
      [`a:${randomBytes(16).toString("base64")}`, 'entry 1 ("a"): the key must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)'],
      [`a:${"!".repeat(44)}`, 'entry 1 ("a"): the key must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)'],
      [`a:${good}:x`, "entry 1 must be <id>:<base64 key>"],
    ];
    for (const [value, problem] of cases) {
      expect(configProblems({ PAYLOAD_ENCRYPTION_KEYS: value })).toEqual([`PAYLOAD_ENCRYPTION_KEYS: PAYLOAD_ENCRYPTION_KEYS ${problem}`]);
    }
    const keys = loadConfig({ PAYLOAD_ENCRYPTION_KEYS: `a:${good}, b:${key().replace(/=+$/, "")}` }).payloadEncryptionKeys;
    expect(keys?.map((k) => [k.id, k.key.length])).toEqual([
      ["a", 32],
      ["b", 32],
    ]);
  });

  it("opens only what it sealed for that job, and says why not", () => {
    const cipher = new PayloadCipher([{ id: "a", key: randomBytes(32) }]);
    const sealed = cipher.seal({ headers: { authorization: SECRET } }, "webhook", "7");
    expect(cipher.open(sealed, "webhook", "7")).toEqual({ headers: { authorization: SECRET } });
    const reason = (f: () => unknown) => {
      try {
        f();
        return "opened";
      } catch (err) {
        return err instanceof UnsealError ? err.reason : String(err);
      }
    };
    expect(reason(() => cipher.open(sealed, "webhook", "8"))).toBe("tampered or wrong key");
    expect(reason(() => cipher.open(sealed.replace("v1.a.", "v1.b."), "webhook", "7"))).toBe("unknown key");
    for (const bad of ["", "v1", "v2.a.x.y.z", "v1.a.short.tag.ct", `${sealed}.extra`, "v1.a.".padEnd(100_000, "A")]) {
      expect(reason(() => cipher.open(bad, "webhook", "7"))).toBe("malformed");
    }
  });
});
