// What the API and the worker say at start when the usual things are wrong: a database that does not
// exist yet (created in development, refused in production) and a port that is taken. One line, no stack.
import { randomBytes } from "node:crypto";
import net from "node:net";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { admin, adminDatabaseUrl } from "../src/testing/database.ts";
import { killAll, startApi, startProcess } from "../src/testing/processes.ts";
import { deletePrefix, testRedisUrl, uniquePrefix } from "../src/testing/redis.ts";

const prefix = uniquePrefix();
const created: string[] = [];

/** A database name nobody has made, and its URL on the test server. */
function missingDatabase(): { name: string; url: string } {
  const name = `jobs_missing_${randomBytes(6).toString("hex")}`;
  created.push(name);
  const url = new URL(adminDatabaseUrl);
  url.pathname = `/${name}`;
  return { name, url: url.toString() };
}

const exists = (name: string) => admin(async (c) => (await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount === 1);

/** A port held by a plain TCP server for the duration of `run`. */
async function withTakenPort<T>(run: (port: number) => Promise<T>): Promise<T> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    return await run((server.address() as net.AddressInfo).port);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

afterAll(async () => {
  expect(await killAll()).toEqual([]);
  await deletePrefix(prefix);
  for (const name of created) await admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
});

describe("a DATABASE_URL whose database does not exist", () => {
  it("in development, the API creates it, migrates it and starts", async () => {
    const db = missingDatabase();
    const api = await startApi({ NODE_ENV: "development", DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix });
    expect(await exists(db.name)).toBe(true);
    const url = new URL(adminDatabaseUrl);
    url.pathname = `/${db.name}`;
    const migrations = await new pg.Client({ connectionString: url.toString() });
    await migrations.connect();
    const { rows } = await migrations.query("SELECT count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL");
    await migrations.end();
    expect(rows[0].n).toBeGreaterThan(0);
    expect(await api.stop("SIGTERM")).toBe(0);
  });

  it("in production, the API refuses with one line and creates nothing", async () => {
    const db = missingDatabase();
    const api = await startProcess(
      "src/server/main.ts",
      {
        NODE_ENV: "production",
        ADMIN_API_KEY: "a-long-enough-admin-key",
        JOB_TOKEN_SECRET: "a-job-token-secret-of-32-characters-at-least",
        DATABASE_URL: db.url,
        REDIS_URL: testRedisUrl,
        PORT: "0",
      },
      null,
    );
    expect(await api.exited).toBe(1);
    const host = new URL(adminDatabaseUrl).host;
    expect(api.stderr().trim()).toBe(`error: database "${db.name}" on ${host} does not exist: create it (createdb), or fix DATABASE_URL`);
    expect(await exists(db.name)).toBe(false);
  });

  it("in production, the worker refuses with the same line", async () => {
    const db = missingDatabase();
    const worker = await startProcess(
      "workers/main.ts",
      { NODE_ENV: "production", DATABASE_URL: db.url, REDIS_URL: testRedisUrl, WORKER_PORT: "0" },
      null,
    );
    expect(await worker.exited).toBe(1);
    expect(worker.stderr().trim()).toMatch(
      /^error: database "jobs_missing_\w+" on \S+ does not exist: create it \(createdb\), or fix DATABASE_URL$/,
    );
  });

  it("npm run db:migrate creates it in development, and refuses in production", async () => {
    const db = missingDatabase();
    const refused = await startProcess("scripts/db-migrate.ts", { NODE_ENV: "production", DATABASE_URL: db.url }, null);
    expect(await refused.exited).toBe(1);
    expect(refused.stderr().trim()).toMatch(/^db:migrate failed: database "jobs_missing_\w+" on \S+ does not exist/);
    expect(await exists(db.name)).toBe(false);
    const migrated = await startProcess("scripts/db-migrate.ts", { DATABASE_URL: db.url }, null);
    expect(await migrated.exited).toBe(0);
    expect(migrated.stdout()).toMatch(/^Created the database\.\nApplied: \d+_init, /);
    expect(await exists(db.name)).toBe(true);
  });

  it("a PostgreSQL that is not there is named, not a stack trace", async () => {
    const port = await withTakenPort(async (p) => p); // free again once closed: nothing listens on it
    const api = await startProcess(
      "src/server/main.ts",
      { DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/jobs`, REDIS_URL: testRedisUrl, PORT: "0" },
      null,
    );
    expect(await api.exited).toBe(1);
    expect(api.stderr()).not.toMatch(/\n\s+at /);
    expect(api.stderr().trim().split("\n").at(-1)).toBe(
      `error: cannot reach PostgreSQL for "jobs" on 127.0.0.1:${port} (ECONNREFUSED): start it, or fix DATABASE_URL`,
    );
  });
});

describe("a port that is taken", () => {
  const base = () => {
    const url = new URL(adminDatabaseUrl);
    url.pathname = `/${missingDatabase().name}`;
    return { DATABASE_URL: url.toString(), REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix };
  };

  it("the API says which port and which variable, in one line", async () => {
    await withTakenPort(async (port) => {
      const api = await startProcess("src/server/main.ts", { ...base(), PORT: String(port) }, null);
      expect(await api.exited).toBe(1);
      const lines = api
        .stderr()
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("error:") || /^\s+at /.test(l));
      expect(lines).toEqual([
        `error: port ${port} is already in use (another copy of this server?): stop it, or set PORT to another port (PORT=0 picks a free one)`,
      ]);
    });
  });

  it("the worker names WORKER_PORT", async () => {
    await withTakenPort(async (port) => {
      const worker = await startProcess("workers/main.ts", { ...base(), WORKER_PORT: String(port) }, null);
      expect(await worker.exited).toBe(1);
      expect(worker.stderr()).toContain(
        `error: port ${port} is already in use (another copy of this server?): stop it, or set WORKER_PORT to another port (WORKER_PORT=0 picks a free one)`,
      );
      expect(worker.stderr()).not.toMatch(/\n\s+at /);
    });
  });
});
