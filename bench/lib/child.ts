import { type ChildProcess, fork } from "node:child_process";
import path from "node:path";

const benchDir = path.resolve(import.meta.dirname, "..");

/**
 * Runs a bench script (`bench/<entry>`) in its own Node process, so the load it generates or measures
 * never shares an event loop with the process under test. The script gets `input` as JSON in argv[2]
 * and answers with one JSON line on stdout (the last line wins).
 */
export async function runScript<T>(entry: string, input: unknown, timeoutMs: number): Promise<T> {
  const child = spawnScript(entry, input);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    err += d;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  const last = out.trim().split("\n").at(-1) ?? "";
  if (code !== 0 || !last.startsWith("{")) throw new Error(`${entry} failed (exit ${code}):\n${err.slice(-2000)}`);
  return JSON.parse(last) as T;
}

/** Starts a bench script with an IPC channel, for clients the harness steers (start, report, stop). */
export function spawnScript(entry: string, input: unknown): ChildProcess {
  return fork(path.join(benchDir, entry), [JSON.stringify(input)], {
    execArgv: [],
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
}

/** The script's side: its input. */
export function scriptInput<T>(): T {
  return JSON.parse(process.argv[2] ?? "{}") as T;
}

/** The script's side: prints its answer and exits. */
export function answer(result: unknown): never {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}
