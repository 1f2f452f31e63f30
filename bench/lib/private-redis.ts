import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./free-port.ts";

export interface PrivateRedis {
  url: string;
  port: number;
  dir: string;
  /** kill -9: whatever AOF had not fsynced is lost. */
  kill9(): Promise<void>;
  /** SHUTDOWN (saves / fsyncs the AOF), then waits for the exit. */
  shutdown(): Promise<void>;
  /** Starts the server again on the same port and data directory. */
  restart(): Promise<void>;
  /** Stops it and removes its data directory. */
  destroy(): Promise<void>;
}

async function waitForPing(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => {});
    try {
      await probe.connect();
      // AOF loading answers LOADING errors to PING; wait until it is really serving.
      if ((await probe.ping()) === "PONG") return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer within ${timeoutMs} ms`);
    } finally {
      probe.disconnect();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A redis-server of our own on a free port, so benches and drills never load or stop the shared one.
 * `aof` turns on appendonly with appendfsync everysec (what the Redis restart drill needs).
 */
export async function startPrivateRedis(options: { aof?: boolean } = {}): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-redis-"));
  const url = `redis://127.0.0.1:${port}`;
  let proc: ChildProcess | null = null;
  const exited = () =>
    new Promise<void>((resolve) =>
      proc && proc.exitCode === null && proc.signalCode === null ? proc.once("exit", () => resolve()) : resolve(),
    );
  const launch = async () => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--maxmemory-policy", "noeviction"];
    args.push(...(options.aof ? ["--appendonly", "yes", "--appendfsync", "everysec"] : ["--appendonly", "no"]));
    proc = spawn("redis-server", args, { stdio: "ignore" });
    await waitForPing(url);
  };
  await launch();
  const stop = async (how: "kill9" | "shutdown") => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const done = exited();
    if (how === "kill9") proc.kill("SIGKILL");
    else {
      const c = new Redis(url, { maxRetriesPerRequest: 0 });
      c.on("error", () => {});
      await c.call("SHUTDOWN").catch(() => {});
      c.disconnect();
    }
    await done;
  };
  return {
    url,
    port,
    dir,
    kill9: () => stop("kill9"),
    shutdown: () => stop("shutdown"),
    restart: launch,
    destroy: async () => {
      await stop("kill9");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
