import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./free-port.ts";

export interface PrivatePostgres {
  /** A URL to the `postgres` database (create your own from it). */
  adminUrl: string;
  version: string;
  stop(): Promise<void>;
}

/** Runs a command as the `postgres` user when we are root (initdb refuses to run as root). */
function asPostgres(cmd: string, args: string[]): string {
  const runAs = process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  return execFileSync(runAs[0] as string, runAs[1] as string[], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** A PostgreSQL cluster of our own in a temporary directory, on a free port, trust auth. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-pg-"));
  if (process.getuid?.() === 0) execFileSync("chown", ["postgres", dir]);
  asPostgres("initdb", ["-D", dir, "-U", "postgres", "-A", "trust", "--no-sync"]);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB`;
  asPostgres("pg_ctl", ["-D", dir, "-o", opts, "-l", path.join(dir, "log"), "-w", "start"]);
  const version = asPostgres("postgres", ["--version"]).trim();
  return {
    adminUrl: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    version,
    stop: async () => {
      spawnSync(
        process.getuid?.() === 0 ? "runuser" : "pg_ctl",
        process.getuid?.() === 0
          ? ["-u", "postgres", "--", "pg_ctl", "-D", dir, "-m", "immediate", "stop"]
          : ["-D", dir, "-m", "immediate", "stop"],
        { stdio: "ignore" },
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
