// Composition root of the API process: config -> infra -> services -> HTTP; shutdown on signals.
import { apiConfigProblems, ConfigError, loadConfigOrExit } from "../config.ts";
import { listenErrorLine } from "../infra/listen-error.ts";
import { createLogger } from "../infra/logger.ts";
import { prepareDatabase } from "../infra/prepare-database.ts";
import { startTracing } from "../infra/tracing.ts";
import { buildAppFrom } from "./compose.ts";
import { createApiRuntime } from "./runtime.ts";

const config = loadConfigOrExit();
const log = createLogger(config.logLevel, { process: "api" }, { format: config.logFormat });
for (const line of apiConfigProblems(config)) {
  process.stderr.write(`config error: ${line}\n`);
  process.exitCode = 1;
}
if (process.exitCode === 1) process.exit(1);

try {
  const { created, applied } = await prepareDatabase(config);
  if (created) log.info("created the database (development)");
  if (applied.length > 0) log.info("applied migrations", { applied });
} catch (err) {
  process.stderr.write(`error: ${(err as Error).message}\n`);
  process.exit(1);
}

// OTEL_EXPORTER_OTLP_ENDPOINT unset: no SDK is loaded and nothing below is traced.
const tracing = config.tracing
  ? await startTracing({ ...config.tracing, serviceName: config.tracing.serviceName ?? "job-control-api", log })
  : undefined;
const runtime = await createApiRuntime(config, log, tracing?.telemetry).catch((err: unknown) => {
  // JOBS_MODULE can only be checked by loading it.
  if (!(err instanceof ConfigError)) throw err;
  for (const line of err.problems) process.stderr.write(`config error: ${line}\n`);
  process.exit(1);
});
if (await runtime.access.authenticator.isOpen().catch(() => true)) {
  process.stderr.write(
    "\n  WARNING: AUTH IS OPEN. No ADMIN_API_KEY is set and no API key exists, so anyone who can reach this port\n  can enqueue, cancel and read every job. Set ADMIN_API_KEY or create a key (npm run keys -- create) before\n  exposing it; requests without a key are refused from the moment a key exists.\n\n",
  );
}
const app = buildAppFrom(config, runtime, log, {
  demoPage: config.demoPage && (config.nodeEnv === "development" ? "rebuild" : true),
  tracing,
});
const url = await app.start(config.port, config.host).catch((err: unknown) => {
  const line = listenErrorLine(err, config.port, "PORT");
  if (!line) throw err;
  process.stderr.write(`error: ${line}\n`);
  return process.exit(1);
});
log.info("API listening", { url, queues: runtime.registry.queues() });

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) {
    log.warn("second signal: exiting now", { signal });
    process.exit(1);
  }
  stopping = true;
  log.info("shutting down", { signal });
  const force = setTimeout(() => {
    log.error("shutdown took too long; exiting");
    process.exit(1);
  }, config.shutdownGraceMs);
  force.unref();
  await app.stop();
  await runtime.close();
  // The spans of the last requests, exported before exit (bounded: a collector that is gone can't hold us).
  await tracing?.shutdown();
  log.info("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
// Printed only now, with the signal handlers in place: whoever waits for this line may signal at once.
process.stdout.write(`GraphQL API ready at ${url}${config.nodeEnv !== "production" ? " (open it in a browser for GraphiQL)" : ""}\n`);
if (config.demoPage) process.stdout.write(`Demo page at ${new URL("/demo", url).href}\n`);
