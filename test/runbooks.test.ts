import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";
import { until } from "../src/testing/wait.ts";

// docs/runbooks/: every `graphql` block (with the `json` block after it as variables) runs against a
// real API without errors, and every `sh` block exits 0 against the real API, worker, Redis and
// PostgreSQL, so the runbooks stay true. Every alert's runbook_url names a runbook that names the alert.

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const dir = path.join(root, "docs/runbooks");
const KEY = "runbook-admin-key-0123456789";
const METRICS_TOKEN = "runbook-metrics-token-0123";

interface Block {
  file: string;
  lang: string;
  code: string;
  variables?: Record<string, unknown>;
}

/** The fenced blocks of a Markdown file, a `json` block after a `graphql` one becoming its variables. */
function blocks(file: string, text: string): Block[] {
  const found: Block[] = [];
  for (const m of text.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)) {
    const lang = m[1] as string;
    const code = m[2] as string;
    const last = found.at(-1);
    if (lang === "json" && last?.lang === "graphql" && !last.variables) last.variables = JSON.parse(code);
    else found.push({ file, lang, code });
  }
  return found;
}

let stack: TestStack;
let all: Block[];
let env: Record<string, string>;

beforeAll(async () => {
  stack = await startTestStack({
    env: { ADMIN_API_KEY: KEY, METRICS_TOKEN },
    workerEnv: { WORKER_QUEUES: "demo" },
  });
  const files = (await readdir(dir)).filter((f) => f.endsWith(".md")).sort();
  all = [];
  for (const f of files) all.push(...blocks(f, await readFile(path.join(dir, f), "utf8")));
  const workerPort = /health on port (\d+)/.exec(stack.worker?.stdout() ?? "")?.[1];
  env = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/tmp",
    API: stack.api.url.replace(/\/graphql$/, ""),
    WORKER: `http://127.0.0.1:${workerPort}`,
    KEY,
    METRICS_TOKEN,
    QUEUE: "demo",
    QUEUE_PREFIX: stack.prefix,
    REDIS_URL: stack.env.REDIS_URL as string,
    DATABASE_URL: stack.databaseUrl,
  };
  // What the runbooks act on: job 1 failed for good (with its audit row), job 2 running.
  const enqueue = (name: string, data: unknown) =>
    graphql(`mutation ($input: EnqueueJobInput!) { enqueueJob(input: $input) { __typename } }`, {
      input: { queue: "demo", name, data },
    });
  await enqueue("fail", { message: "boom" });
  await enqueue("sleep", { steps: 1, stepMs: 60_000 });
  await until(
    "job 1's audit row",
    async () => JSON.stringify(await graphql(`{ failedJobAudits(queue: "demo") { edges { node { jobId } } } }`)),
    (s) => s.includes('"jobId":"1"'),
  );
});

afterAll(async () => {
  await stack?.stop();
});

async function graphql(query: string, variables: Record<string, unknown> = {}): Promise<unknown> {
  const res = await fetch(stack.api.url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: unknown; errors?: unknown[] };
  if (res.status !== 200 || body.errors) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body)}\n${query}`);
  return body.data;
}

describe("runbooks", () => {
  it("have GraphQL operations and shell commands to run", () => {
    expect(all.filter((b) => b.lang === "graphql").length).toBeGreaterThanOrEqual(15);
    expect(all.filter((b) => b.lang === "sh").length).toBeGreaterThanOrEqual(8);
    expect(all.every((b) => b.lang === "graphql" || b.lang === "sh")).toBe(true);
  });

  it("every GraphQL operation runs without errors", async () => {
    for (const b of all.filter((x) => x.lang === "graphql")) {
      try {
        await graphql(b.code, b.variables ?? {});
      } catch (err) {
        throw new Error(`${b.file}: ${(err as Error).message}`);
      }
    }
  });

  it("every shell command exits 0", async () => {
    for (const b of all.filter((x) => x.lang === "sh")) {
      try {
        await run("bash", ["-euo", "pipefail", "-c", b.code], { env, timeout: 30_000 });
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        throw new Error(`${b.file}: exit ${e.code}\n${b.code}\n${e.stdout}\n${e.stderr}`);
      }
    }
  });

  it("every alert links a runbook that exists and names it", async () => {
    const rules = await readFile(path.join(root, "deploy/prometheus/alerts.yml"), "utf8");
    const alerts = [...rules.matchAll(/- alert: (\w+)[\s\S]*?runbook_url: \S+\/docs\/runbooks\/([\w-]+\.md)/g)];
    expect(alerts.length).toBe([...rules.matchAll(/- alert: /g)].length);
    for (const [, alert, file] of alerts) {
      const text = await readFile(path.join(dir, file as string), "utf8");
      expect(text, `${file} names ${alert}`).toContain(`\`${alert}\``);
    }
  });
});
