// `npm run dev` without REDIS_URL: use the Redis answering on 127.0.0.1:<port>, or start the
// `redis-server` found on PATH there (AOF on, data under `<dir>/redis`), or explain how to get one.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { stopChild } from "../../src/infra/stop-child.ts";

export interface LocalRedis {
  url: string;
  /** The redis-server this process started, if it started one. */
  child: ChildProcess | undefined;
  /** Stops the redis-server it started (SIGTERM: Redis fsyncs the AOF and exits); else nothing. */
  stop(): Promise<void>;
}

export class NoRedisError extends Error {}

/** The paragraph for a machine with no Redis at all. */
export function noRedisMessage(port: number): string {
  return [
    `No Redis answers on 127.0.0.1:${port}, and there is no redis-server on PATH to start one.`,
    "Install Redis (6.2 or newer) and run `npm run dev` again: it starts redis-server itself, keeping its",
    "data under .data/redis. Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`;",
    "Fedora: `sudo dnf install redis`. With Docker: `npm run compose:secrets && docker compose up -d redis`,",
    "then REDIS_URL=redis://:<REDIS_PASSWORD from .env>@127.0.0.1:6379. Or set REDIS_URL to a Redis you run.",
  ].join("\n");
}

/** What answers on host:port: "redis" (PONG, or an auth error: a Redis that wants a password), "other", or null (nothing). */
export function probeRedis(port: number, host = "127.0.0.1", timeoutMs = 1_000): Promise<"redis" | "auth" | "other" | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    let answer = "";
    const done = (v: "redis" | "auth" | "other" | null) => {
      socket.destroy();
      resolve(v);
    };
    socket.setTimeout(timeoutMs, () => done(answer ? "other" : null));
    socket.once("error", () => done(null));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => {
      answer += d;
      if (!answer.includes("\r\n")) return;
      // -LOADING: a Redis still reading its AOF; clients wait for it.
      if (answer.startsWith("+PONG") || answer.startsWith("-LOADING")) done("redis");
      else if (/^-(NOAUTH|WRONGPASS)/.test(answer)) done("auth");
      else done("other");
    });
  });
}

/** The first executable `name` on PATH, or undefined. */
export function findOnPath(name: string, pathVar = process.env.PATH ?? ""): string | undefined {
  for (const dir of pathVar.split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Finds or starts a Redis on 127.0.0.1:`port`; throws NoRedisError (with the paragraph) when neither works. */
export async function startLocalRedis(dir: string, port: number, log: (line: string) => void = () => {}): Promise<LocalRedis> {
  const url = `redis://127.0.0.1:${port}`;
  const found = await probeRedis(port);
  if (found === "redis") {
    log(`using the Redis already running on 127.0.0.1:${port}`);
    return { url, child: undefined, stop: async () => {} };
  }
  if (found === "auth") {
    throw new NoRedisError(
      `The Redis on 127.0.0.1:${port} wants a password: set REDIS_URL=redis://:<password>@127.0.0.1:${port} (or DEV_REDIS_PORT to another port for a Redis of its own).`,
    );
  }
  if (found === "other") {
    throw new NoRedisError(`Something that is not Redis answers on 127.0.0.1:${port}: set DEV_REDIS_PORT to a free port, or REDIS_URL.`);
  }
  const server = findOnPath("redis-server");
  if (!server) throw new NoRedisError(noRedisMessage(port));

  const dataDir = path.resolve(dir, "redis");
  fs.mkdirSync(dataDir, { recursive: true });
  const logFile = path.join(dataDir, "redis.log");
  // Detached (a process group of its own): Ctrl-C reaches the API and worker first, Redis is stopped last.
  const child = spawn(
    server,
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dataDir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      "--save",
      "",
      "--maxmemory-policy",
      "noeviction",
      "--logfile",
      logFile,
      "--daemonize",
      "no",
    ],
    { detached: true, stdio: "ignore" },
  );
  log(`started ${server} on 127.0.0.1:${port} (pid ${child.pid}), data in ${dataDir}`);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").trim().split("\n").slice(-5).join("\n") : "";
      throw new NoRedisError(`redis-server exited at start (${child.exitCode ?? child.signalCode}); its log:\n${tail}`);
    }
    if ((await probeRedis(port)) === "redis") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    stop: () => stopChild(child, "SIGTERM"),
  };
}
