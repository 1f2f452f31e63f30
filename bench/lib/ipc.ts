import type { ChildProcess } from "node:child_process";
import { spawnScript } from "./child.ts";

export interface Steered<M> {
  child: ChildProcess;
  /** The next message with this `type` (or any message when type is omitted); rejects if the process exits first. */
  next<T extends M>(type?: string, timeoutMs?: number): Promise<T>;
  send(message: unknown): void;
  kill(): void;
}

/** A bench script run with IPC, steered by messages (load clients, baseline servers). */
export function steer<M extends object>(entry: string, input: unknown): Steered<M> {
  const child = spawnScript(entry, input);
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  child.stdout?.resume();
  const queue: M[] = [];
  const waiters: { type?: string; resolve: (m: M) => void }[] = [];
  child.on("message", (m: M) => {
    const i = waiters.findIndex((w) => !w.type || (m as { type?: string }).type === w.type);
    if (i >= 0) waiters.splice(i, 1)[0]?.resolve(m);
    else queue.push(m);
  });
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code, signal) => reject(new Error(`${entry} exited (${code ?? signal}): ${stderr.slice(-1500)}`))),
  );
  exited.catch(() => {});
  return {
    child,
    next: <T extends M>(type?: string, timeoutMs = 120_000) => {
      const i = queue.findIndex((m) => !type || (m as { type?: string }).type === type);
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0] as T);
      return Promise.race([
        new Promise<T>((resolve) => waiters.push({ type, resolve: resolve as (m: M) => void })),
        exited,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`${entry}: no ${type ?? "message"} within ${timeoutMs} ms`)), timeoutMs).unref(),
        ),
      ]);
    },
    send: (message) => {
      if (child.connected) child.send(message as never);
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
