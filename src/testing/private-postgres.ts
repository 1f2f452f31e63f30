import { execFile } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { applyMigrations } from "../infra/migrate.ts";

const run = promisify(execFile);

/** A free TCP port on loopback (the OS picks it; racy in theory, fine for tests). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

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
 * A PostgreSQL cluster of its own (initdb + pg_ctl as user postgres, on a free loopback port, fsync
 * off), migrated: for tests that stop and start the database. Needs the PostgreSQL binaries on PATH
 * and a `postgres` system user (the tests run as root).
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pg-private-"));
  fs.chownSync(dir, ...postgresIds());
  const data = path.join(dir, "data");
  const port = await freePort();
  const asPostgres = (cmd: string, args: string[]) => run("runuser", ["-u", "postgres", "--", cmd, ...args], { env: process.env });
  await asPostgres("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
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

function postgresIds(): [number, number] {
  const line = fs
    .readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (!uid || !gid) throw new Error("no postgres user in /etc/passwd: the private PostgreSQL needs one");
  return [Number(uid), Number(gid)];
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
