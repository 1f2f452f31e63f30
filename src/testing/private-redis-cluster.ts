import { type ChildProcess, execFile, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { stopChild } from "../infra/stop-child.ts";

const run = promisify(execFile);

export interface PrivateRedisCluster {
  /** The seed nodes as REDIS_CLUSTER_NODES wants them: `127.0.0.1:<p1>,127.0.0.1:<p2>,...`. */
  nodes: string;
  ports: number[];
  /** SIGKILLs one node (a master, to make its replica take over); the others keep running. */
  kill(port: number): Promise<void>;
  /** Kills every node and deletes the data directory. */
  destroy(): Promise<void>;
}

async function canListen(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * A free port whose cluster bus port (port + 10000, fixed by Redis) is free too. Picked at random
 * from a range that keeps the bus port below 65536; racy in theory, fine for tests.
 */
async function freeNodePort(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if (taken.has(port) || taken.has(port + 10_000)) continue;
    if ((await canListen(port)) && (await canListen(port + 10_000))) return port;
  }
  throw new Error("no free port pair for a Redis Cluster node");
}

/**
 * A Redis Cluster of its own: `size` masters with `replicas` replicas each (none by default) on free
 * loopback ports, each a `redis-server` child process with persistence off (and `requirepass` when a
 * password is given), joined with `redis-cli --cluster create` and resolved once `cluster_state:ok`
 * (and every replica in sync). A master that stops answering is failed over after `nodeTimeoutMs`.
 * Needs `redis-server` and `redis-cli` on PATH.
 */
export async function startPrivateRedisCluster(
  options: { size?: number; replicas?: number; password?: string; nodeTimeoutMs?: number } = {},
): Promise<PrivateRedisCluster> {
  const masters = options.size ?? 3;
  const replicas = options.replicas ?? 0;
  const size = masters * (1 + replicas);
  // With a password every node requires it from clients and from each other.
  const auth = options.password ? ["--requirepass", options.password, "--masterauth", options.password] : [];
  const cliAuth = options.password ? ["-a", options.password, "--no-auth-warning"] : [];
  const cli = (port: number, ...args: string[]) => redisCli(["-p", String(port), ...cliAuth, ...args]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "redis-cluster-"));
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  const byPort = new Map<number, ChildProcess>();
  const destroy = async () => {
    await Promise.all(children.map((child) => stopChild(child, "SIGKILL")));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const taken = new Set<number>();
    for (let i = 0; i < size; i++) {
      const port = await freeNodePort(taken);
      taken.add(port).add(port + 10_000);
      ports.push(port);
      // stdio ignored: a node's log is not needed, and an unread pipe could fill up and stall it.
      const child = spawn(
        "redis-server",
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          path.join(dir, `nodes-${port}.conf`),
          "--dir",
          dir,
          "--save",
          "",
          "--appendonly",
          "no",
          "--daemonize",
          "no",
          "--cluster-node-timeout",
          String(options.nodeTimeoutMs ?? 15_000),
          ...auth,
        ],
        { stdio: "ignore" },
      );
      children.push(child);
      byPort.set(port, child);
    }
    for (const port of ports) await waitFor(async () => (await cli(port, "ping")) === "PONG", `node ${port} answering`);
    await run("redis-cli", [
      ...cliAuth,
      "--cluster",
      "create",
      ...ports.map((p) => `127.0.0.1:${p}`),
      "--cluster-replicas",
      String(replicas),
      "--cluster-yes",
    ]);
    // Every node must agree before a client's first slot lookup, or it may be told CLUSTERDOWN.
    for (const port of ports) {
      await waitFor(async () => (await cli(port, "cluster", "info")).includes("cluster_state:ok"), `node ${port} cluster_state:ok`);
    }
    for (const port of ports) {
      const info = await cli(port, "info", "replication");
      if (info.includes("role:slave"))
        await waitFor(async () => (await cli(port, "info", "replication")).includes("master_link_status:up"), `replica ${port} in sync`);
    }
    const kill = async (port: number) => {
      const child = byPort.get(port);
      if (!child) throw new Error(`no node on port ${port}`);
      await stopChild(child, "SIGKILL");
    };
    return { nodes: ports.map((p) => `127.0.0.1:${p}`).join(","), ports, kill, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}

/** What `redis-cli <args>` printed, or "" when it failed. */
export async function redisCli(args: string[]): Promise<string> {
  try {
    const { stdout } = await run("redis-cli", args);
    return stdout.trim();
  } catch {
    return "";
  }
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Redis Cluster: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
