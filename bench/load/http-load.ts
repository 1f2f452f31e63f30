// Load generator process: autocannon against one URL, every response's latency kept for exact percentiles.
import autocannon, { type Result } from "autocannon";
import { answer, scriptInput } from "../lib/child.ts";
import { summarize } from "../lib/stats.ts";

export interface HttpLoadInput {
  url: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  body?: string;
  connections: number;
  /** Requests each connection sends without waiting for answers (HTTP pipelining; 1, the default: none). */
  pipelining?: number;
  warmupSec: number;
  durationSec: number;
}

export interface HttpLoadResult {
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  requests: number;
  errors: number;
  non2xx: number;
  /** Responses during the warm-up (with `requests`, every request the server answered). */
  warmupRequests: number;
  /** This load generator's own CPU time over the measured window, as a share of one core (near 1: it, not the server, set the pace). */
  loadCpuShare: number;
}

function run(input: HttpLoadInput, durationSec: number, latencies: number[] | null) {
  return new Promise<{ result: Result; ok: number; answered: number }>((resolve, reject) => {
    let ok = 0;
    let answered = 0;
    const instance = autocannon(
      {
        url: input.url,
        method: input.method,
        headers: input.headers,
        body: input.body,
        connections: input.connections,
        pipelining: input.pipelining ?? 1,
        duration: durationSec,
      },
      (err, result) => (err ? reject(err) : resolve({ result, ok, answered })),
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      answered++;
      if (status >= 200 && status < 300) ok++;
      latencies?.push(ms);
    });
  });
}

const input = scriptInput<HttpLoadInput>();
// Warm-up: JIT, connection pools, caches; its numbers are thrown away.
const warmup = input.warmupSec > 0 ? await run(input, input.warmupSec, null) : null;
const latencies: number[] = [];
const cpu = process.cpuUsage();
const wall = performance.now();
const { result, ok } = await run(input, input.durationSec, latencies);
const used = process.cpuUsage(cpu);
const s = summarize(latencies);
answer({
  rps: ok / input.durationSec,
  p50: s.p50,
  p95: s.p95,
  p99: s.p99,
  requests: latencies.length,
  errors: result.errors + result.timeouts,
  non2xx: result.non2xx,
  warmupRequests: warmup?.answered ?? 0,
  loadCpuShare: (used.user + used.system) / 1000 / (performance.now() - wall),
} satisfies HttpLoadResult);
