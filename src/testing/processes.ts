import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");

export interface RunningProcess {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal's name) once the process has ended. */
  exited: Promise<number | string>;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

const running = new Set<RunningProcess>();

/**
 * Node flags of an entry, as package.json's scripts give them. A worker allocates a few short-lived
 * objects per job; a 32 MB young generation (V8's default is 16) halves how often it is collected.
 */
const NODE_FLAGS: Record<string, string[]> = { "workers/main.ts": ["--max-semi-space-size=32"] };

/**
 * Starts `entry` (a .ts file under the repo) with Node (its own TypeScript type stripping), as `npm start` / `npm run worker` would, and
 * resolves once its stdout contains `readyLine` (at once when null). `args` follow the entry on the command line.
 */
export async function startProcess(
  entry: string,
  env: Record<string, string>,
  readyLine: RegExp | null,
  timeoutMs = 30_000,
  args: string[] = [],
  /** The checkout to run `entry` from (the bench compares a worker with another checkout's). */
  from = root,
): Promise<RunningProcess> {
  const proc = spawn(process.execPath, [...(NODE_FLAGS[entry] ?? []), path.join(from, entry), ...args], {
    cwd: from,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stdout?.on("data", (d) => {
    out += d;
  });
  proc.stderr?.on("data", (d) => {
    err += d;
  });
  const exited = new Promise<number | string>((resolve) => proc.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  const handle: RunningProcess = {
    proc,
    stdout: () => out,
    stderr: () => err,
    exited,
    stop: async (signal = "SIGTERM") => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
  running.add(handle);
  void exited.then(() => running.delete(handle));
  if (readyLine) {
    const deadline = Date.now() + timeoutMs;
    while (!readyLine.test(out)) {
      if (proc.exitCode !== null) throw new Error(`${entry} exited with ${proc.exitCode} before it was ready:\n${err}`);
      if (Date.now() > deadline) {
        proc.kill("SIGKILL");
        throw new Error(`${entry} not ready after ${timeoutMs} ms:\n${out}\n${err}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return handle;
}

/** Kills what is still running (for afterEach/afterAll) and says what had been left behind. */
export async function killAll(): Promise<string[]> {
  const left = [...running];
  await Promise.all(left.map((p) => p.stop("SIGKILL")));
  return left.map((p) => String(p.proc.spawnargs.at(-1)));
}

export const startWorker = (env: Record<string, string>, from = root) =>
  startProcess("workers/main.ts", { WORKER_PORT: "0", ...env }, /serving queues/, 30_000, [], from);
export const startApi = (env: Record<string, string>) =>
  startProcess("src/server/main.ts", { PORT: "0", ...env }, /GraphQL API ready at (\S+)/);
