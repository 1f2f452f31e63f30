import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// deploy/: the Prometheus rules pass promtool (and its unit tests) and a broken copy does not; every
// metric the Grafana dashboard, the rules and the KEDA example query exists in a real scrape of the
// API or a worker. promtool comes from Debian's `prometheus` package (.ci/run installs it).

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const rulesFile = path.join(root, "deploy/prometheus/alerts.yml");
const rulesTestFile = path.join(root, "deploy/prometheus/alerts.test.yml");
const dashboardFile = path.join(root, "deploy/grafana/job-control.json");
const kedaFile = path.join(root, "deploy/keda-scaledobject.yaml");

/** Runs promtool; resolves with its exit code and output (a missing promtool fails the test, naming the package). */
async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run("promtool", args);
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === "ENOENT") throw new Error("promtool not found: install Debian's `prometheus` package (apt-get install -y prometheus)");
    return { code: Number(e.code), output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

const PROMQL_WORDS = new Set([
  "and",
  "or",
  "unless",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "offset",
  "inf",
  "nan",
]);

/**
 * The metric names a PromQL expression reads: identifiers that are not functions (followed by `(`),
 * keywords, label names (inside `{}` or after by / without / on / ignoring), durations or numbers.
 * Grafana's `$var` and `$__rate_interval` are left out with the brackets and matchers around them.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // ranges and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ") // label lists
    .replace(/\boffset\s+\S+/g, " ")
    .replace(/\$\w+/g, " ");
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*(?=\s*(\()?)/g)) {
    if (m[1] === "(" || PROMQL_WORDS.has(m[0].toLowerCase())) continue;
    // A number's exponent or a duration (5m, 1e3) starts with a digit and is never matched here.
    names.add(m[0]);
  }
  return [...names];
}

/** Every `expr:` of a rules file, block scalars (`expr: |`) included. */
function ruleExprs(yaml: string): string[] {
  const lines = yaml.split("\n");
  const exprs: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)(?:- )?expr:\s*(.*)$/.exec(lines[i] as string);
    if (!m) continue;
    if (m[2]?.trim() !== "|") {
      exprs.push(m[2] as string);
      continue;
    }
    const block: string[] = [];
    const indent = (line: string) => line.length - line.trimStart().length;
    while (i + 1 < lines.length) {
      const next = lines[i + 1] as string;
      if (next.trim() !== "" && indent(next) <= (m[1] as string).length) break;
      block.push(next);
      i++;
    }
    exprs.push(block.join("\n"));
  }
  return exprs;
}

/** Every PromQL of the dashboard: panel targets and query variables. */
function dashboardExprs(dashboard: {
  panels: { targets?: { expr: string }[] }[];
  templating: { list: { type: string; definition?: string }[] };
}): string[] {
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  for (const v of dashboard.templating.list) {
    const m = v.type === "query" ? /^label_values\((.*),\s*\w+\)$/.exec(v.definition ?? "") : null;
    if (m) exprs.push(m[1] as string);
  }
  return exprs;
}

/** Sample names of a Prometheus text exposition (`name{...} value` lines). */
function sampleNames(text: string): Set<string> {
  return new Set(
    text
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(l)?.[0] as string),
  );
}

describe("Prometheus rules", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "rules-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("pass promtool check rules, and a broken copy does not", async () => {
    const ok = await promtool("check", "rules", rulesFile);
    expect(ok.output).toContain("SUCCESS");
    expect(ok.code).toBe(0);
    const broken = path.join(dir, "broken.yml");
    const text = await readFile(rulesFile, "utf8");
    await writeFile(
      broken,
      text.replace("max by (queue) (queue_oldest_waiting_seconds) > 300", "max by (queue) (queue_oldest_waiting_seconds > 300"),
    );
    const failed = await promtool("check", "rules", broken);
    expect(failed.code).not.toBe(0);
    expect(failed.output).toMatch(/unclosed|parse error|unexpected/i);
  });

  it("pass their unit tests (promtool test rules), which fail when an alert's threshold changes", async () => {
    const ok = await promtool("test", "rules", rulesTestFile);
    expect(ok.output).toContain("SUCCESS");
    expect(ok.code).toBe(0);
    // The same tests against rules whose "no workers" alert fires too soon must fail.
    await copyFile(rulesTestFile, path.join(dir, "alerts.test.yml"));
    const text = await readFile(rulesFile, "utf8");
    const changed = text.replace(/(alert: JobQueueNoWorkers[\s\S]*?for: )5m/, "$11m");
    expect(changed).not.toBe(text);
    await writeFile(path.join(dir, "alerts.yml"), changed);
    const failed = await promtool("test", "rules", path.join(dir, "alerts.test.yml"));
    expect(failed.code).not.toBe(0);
    expect(failed.output).toContain("JobQueueNoWorkers");
  });
});

describe("metric names in deploy/", () => {
  let stack: TestStack;
  let scraped: Set<string>;

  beforeAll(async () => {
    stack = await startTestStack({ workerEnv: { WORKER_QUEUES: "demo" } });
    // Jobs that complete, retry and fail, so every labelled series exists in the worker's scrape.
    await stack.queue.add("sleep", { steps: 1, stepMs: 1 });
    await stack.queue.add("fail", { message: "once", failTimes: 1 }, { attempts: 2 });
    await stack.queue.add("fail", { message: "always" }, { attempts: 1 });
    const port = /health on port (\d+)/.exec(stack.worker?.stdout() ?? "")?.[1];
    let worker = "";
    for (let i = 0; i < 400 && !/jobs_failed_total\{[^}]*\} 1/.test(worker); i++) {
      worker = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      await new Promise((r) => setTimeout(r, 50));
    }
    // A request first: the HTTP counter has series once a response went out.
    await stack.api.app.fetch(new Request("http://test/healthz"));
    const api = await (await stack.api.app.fetch(new Request("http://test/metrics"))).text();
    scraped = new Set([...sampleNames(api), ...sampleNames(worker)]);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("the extractor finds metric names and leaves out functions, keywords, labels and Grafana variables", () => {
    expect(
      metricNames(
        'histogram_quantile(0.95, sum by (le, queue) (rate(job_processing_duration_seconds_bucket{queue=~"$queue"}[$__rate_interval])))',
      ),
    ).toEqual(["job_processing_duration_seconds_bucket"]);
    expect(metricNames('max by (queue) (a_total) == 0 and on (queue) rec:rule:max > 0 unless b{x="and"} offset 5m')).toEqual([
      "a_total",
      "rec:rule:max",
      "b",
    ]);
  });

  it("every metric the dashboard, the rules and the KEDA example read exists in a real scrape (recording rules are defined)", async () => {
    const dashboard = JSON.parse(await readFile(dashboardFile, "utf8"));
    const rules = await readFile(rulesFile, "utf8");
    const keda = await readFile(kedaFile, "utf8");
    const kedaQueries = [...keda.matchAll(/^\s*query:\s*(.*)$/gm)].map((m) => m[1] as string);
    const recorded = new Set([...rules.matchAll(/^\s*- record:\s*(\S+)/gm)].map((m) => m[1] as string));
    const exprs = [...dashboardExprs(dashboard), ...ruleExprs(rules), ...kedaQueries];
    expect(exprs.length).toBeGreaterThan(30);
    const names = new Set(exprs.flatMap(metricNames));
    const missing = [...names].filter((n) => (n.includes(":") ? !recorded.has(n) : !scraped.has(n)));
    expect(missing).toEqual([]);
    // The dashboard covers what the issue asks of it.
    for (const n of [
      "jobs_completed_total",
      "jobs_failed_total",
      "job_processing_duration_seconds_bucket",
      "queue_jobs",
      "queue_oldest_waiting_seconds",
      "nodejs_eventloop_lag_p99_seconds",
      "ledger_backlog",
      "api_http_requests_total",
    ]) {
      expect(dashboardExprs(dashboard).flatMap(metricNames)).toContain(n);
    }
  });

  it("the dashboard is a Grafana dashboard: unique panel ids, every target with PromQL on the datasource variable", async () => {
    const dashboard = JSON.parse(await readFile(dashboardFile, "utf8"));
    expect(dashboard.uid).toBe("job-control-api");
    const ids = dashboard.panels.map((p: { id: number }) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels.filter((p: { type: string }) => p.type !== "row")) {
      expect(p.targets.length).toBeGreaterThan(0);
      for (const t of p.targets) {
        expect(t.expr.length).toBeGreaterThan(0);
        expect(t.datasource.uid).toBe("$" + "{datasource}");
      }
    }
  });
});
