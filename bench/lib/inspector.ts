// Diagnosis only: drives a child's V8 inspector (started with `--inspect=127.0.0.1:0`) to take a CPU
// profile of a chosen window and a heap snapshot, written as files Chrome DevTools opens.
import { createWriteStream } from "node:fs";
import WebSocket from "ws";

export interface Inspector {
  /** Starts sampling (`intervalUs` between samples). */
  startProfile(intervalUs?: number): Promise<void>;
  /** Stops sampling and writes the `.cpuprofile`. */
  stopProfile(file: string): Promise<void>;
  /** Starts sampling allocations (one sample per `intervalBytes` allocated, on average). */
  startAllocationSampling(intervalBytes?: number): Promise<void>;
  /** Stops sampling and writes the `.heapprofile` (allocations by stack, garbage included). */
  stopAllocationSampling(file: string): Promise<void>;
  /** Writes a `.heapsnapshot` (the process is paused meanwhile; a GC runs first). */
  heapSnapshot(file: string): Promise<void>;
  /** A full garbage collection. */
  collectGarbage(): Promise<void>;
  /** Evaluates `expression` in the process (it must produce a string) and answers the string. */
  evaluate(expression: string): Promise<string>;
  close(): void;
}

/** The inspector's WebSocket URL from the child's stderr ("Debugger listening on ws://..."). */
export function inspectorUrl(stderr: string): string | null {
  return /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1] ?? null;
}

export async function connectInspector(url: string): Promise<Inspector> {
  const ws = new WebSocket(url, { maxPayload: 2 ** 30 });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  let nextId = 1;
  const pending = new Map<number, { resolve: (r: unknown) => void; reject: (e: Error) => void }>();
  let onChunk: ((chunk: string) => void) | null = null;
  ws.on("message", (raw) => {
    const msg = JSON.parse(String(raw)) as {
      id?: number;
      result?: unknown;
      error?: { message: string };
      method?: string;
      params?: { chunk: string };
    };
    if (msg.method === "HeapProfiler.addHeapSnapshotChunk") onChunk?.(msg.params?.chunk ?? "");
    if (msg.id === undefined) return;
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.error) p?.reject(new Error(msg.error.message));
    else p?.resolve(msg.result);
  });
  const call = <T = unknown>(method: string, params: Record<string, unknown> = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve: resolve as (r: unknown) => void, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  return {
    async startProfile(intervalUs = 500) {
      await call("Profiler.setSamplingInterval", { interval: intervalUs });
      await call("Profiler.start");
    },
    async stopProfile(file) {
      const { profile } = await call<{ profile: unknown }>("Profiler.stop");
      const out = createWriteStream(file);
      await new Promise<void>((resolve, reject) => out.end(JSON.stringify(profile), () => resolve()).once("error", reject));
    },
    async startAllocationSampling(intervalBytes = 32_768) {
      await call("HeapProfiler.enable");
      // Keep samples of objects already collected too: the point is what the window allocated.
      await call("HeapProfiler.startSampling", {
        samplingInterval: intervalBytes,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    },
    async stopAllocationSampling(file) {
      const { profile } = await call<{ profile: unknown }>("HeapProfiler.stopSampling");
      const out = createWriteStream(file);
      await new Promise<void>((resolve, reject) => out.end(JSON.stringify(profile), () => resolve()).once("error", reject));
    },
    async heapSnapshot(file) {
      const out = createWriteStream(file);
      onChunk = (chunk) => out.write(chunk);
      try {
        await call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
      } finally {
        onChunk = null;
        await new Promise<void>((resolve) => out.end(() => resolve()));
      }
    },
    async collectGarbage() {
      await call("HeapProfiler.enable");
      await call("HeapProfiler.collectGarbage");
    },
    async evaluate(expression) {
      const { result } = await call<{ result: { value?: unknown } }>("Runtime.evaluate", { expression, returnByValue: true });
      return String(result.value);
    },
    close: () => ws.close(),
  };
}
