// Composition root of the API process: config -> infra -> services -> HTTP; shutdown on signals.
import { apiConfigProblems, ConfigError, loadConfigOrExit } from "../config.ts";
import { schema } from "../graphql/schema.ts";
import { createLogger } from "../infra/logger.ts";
import { applyMigrations } from "../infra/migrate.ts";
import { buildApp } from "./app.ts";
import { createApiRuntime } from "./runtime.ts";
import { websocketLimits } from "./websocket.ts";

const config = loadConfigOrExit();
const log = createLogger(config.logLevel, { process: "api" });
for (const line of apiConfigProblems(config)) {
  process.stderr.write(`config error: ${line}\n`);
  process.exitCode = 1;
}
if (process.exitCode === 1) process.exit(1);
if (!config.adminApiKey) {
  process.stderr.write(
    "\n  WARNING: AUTH IS OPEN. No ADMIN_API_KEY is set, so anyone who can reach this port can enqueue,\n  cancel and read every job. Set ADMIN_API_KEY before exposing it.\n\n",
  );
}

if (config.migrateOnStart) {
  try {
    const applied = await applyMigrations(config.databaseUrl);
    if (applied.length > 0) log.info("applied migrations", { applied });
  } catch (err) {
    log.error("could not apply migrations (set MIGRATE_ON_START=false to skip)", { err });
    process.exit(1);
  }
}

const runtime = await createApiRuntime(config, log).catch((err: unknown) => {
  // READYZ_REQUIRE_WORKERS can only be checked against the registry.
  if (!(err instanceof ConfigError)) throw err;
  for (const line of err.problems) process.stderr.write(`config error: ${line}\n`);
  process.exit(1);
});
const app = buildApp({
  schema,
  context: runtime.context,
  authenticate: runtime.authenticate,
  websocket: websocketLimits(config),
  ready: runtime.ready,
  log,
  graphiql: config.nodeEnv !== "production",
  introspection: config.introspection,
  metricsToken: config.metricsToken,
  metrics: runtime.metrics,
});
const url = await app.start(config.port, config.host);
log.info("API listening", { url, queues: runtime.registry.queues() });
process.stdout.write(`GraphQL API ready at ${url}${config.nodeEnv !== "production" ? " (open it in a browser for GraphiQL)" : ""}\n`);

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
  log.info("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
