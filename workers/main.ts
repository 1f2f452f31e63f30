// Composition root of a worker process: config -> migrations -> one BullMQ Worker per queue; signals.
import { ConfigError, loadConfigOrExit } from "../src/config.ts";
import { startHealthServer } from "../src/infra/health-server.ts";
import { listenErrorLine } from "../src/infra/listen-error.ts";
import { createLogger } from "../src/infra/logger.ts";
import { prepareDatabase } from "../src/infra/prepare-database.ts";
import { startTracing } from "../src/infra/tracing.ts";
import { workerId } from "./lifecycle.ts";
import { createWorkerRuntime } from "./worker-runtime.ts";

const config = loadConfigOrExit();
const log = createLogger(config.logLevel, { process: "worker", workerId }, { format: config.logFormat });

try {
  await prepareDatabase(config);
} catch (err) {
  process.stderr.write(`error: ${(err as Error).message}\n`);
  process.exit(1);
}

// OTEL_EXPORTER_OTLP_ENDPOINT unset: no SDK is loaded and BullMQ gets no telemetry option.
const tracing = config.tracing
  ? await startTracing({ ...config.tracing, serviceName: config.tracing.serviceName ?? "job-control-worker", log })
  : undefined;
const runtime = await createWorkerRuntime(config, log, undefined, tracing?.telemetry).catch((err: unknown) => {
  // WORKER_QUEUES and the per-queue variables can only be checked against the registry.
  if (!(err instanceof ConfigError)) throw err;
  for (const line of err.problems) process.stderr.write(`config error: ${line}\n`);
  process.exit(1);
});
const health = await startHealthServer(
  config.workerPort,
  config.host,
  runtime.ready,
  { render: () => runtime.metrics.render(), token: config.metricsToken },
  (checks) => log.warn("readiness check failed", { checks }),
).catch(async (err: unknown) => {
  const line = listenErrorLine(err, config.workerPort, "WORKER_PORT");
  if (!line) throw err;
  process.stderr.write(`error: ${line}\n`);
  await runtime.stop();
  return process.exit(1);
});
log.info("worker health endpoints listening", { port: health.port });

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) {
    // A second signal: leave active jobs to stalled-job recovery on another worker.
    log.warn("second signal: exiting now", { signal });
    process.exit(1);
  }
  stopping = true;
  log.info("stopping: no new jobs; waiting for active ones", { signal, graceMs: config.shutdownGraceMs });
  const force = setTimeout(() => {
    log.error("grace period over: exiting with jobs still active (another worker will pick them up)");
    process.exit(1);
  }, config.shutdownGraceMs);
  force.unref();
  await runtime.stop();
  await health.close();
  // The spans of the last jobs, exported before exit (bounded: a collector that is gone can't hold us).
  await tracing?.shutdown();
  log.info("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
// Printed only now, with the signal handlers in place: whoever waits for this line may signal at once.
process.stdout.write(`Worker ${workerId} serving queues: ${runtime.queues.join(", ") || "(none)"}; health on port ${health.port}\n`);
