import { type Config, loadConfig } from "../config.ts";
import { schema } from "../graphql/schema.ts";
import { createLogger } from "../infra/logger.ts";
import { type App, buildApp } from "../server/app.ts";
import { type ApiRuntime, createApiRuntime } from "../server/runtime.ts";
import { websocketLimits } from "../server/websocket.ts";

export interface TestApi {
  url: string;
  config: Config;
  app: App;
  runtime: ApiRuntime;
  stop(): Promise<void>;
}

/** The API in this process, listening on a free port, built exactly as `src/server/main.ts` builds it. */
export async function startTestApi(env: Record<string, string>): Promise<TestApi> {
  const config = loadConfig({ NODE_ENV: "test", LOG_LEVEL: "warn", ...env });
  const log = createLogger(config.logLevel, { process: "test-api" });
  const runtime = await createApiRuntime(config, log);
  const app = buildApp({
    schema,
    context: runtime.context,
    authenticate: runtime.authenticate,
    websocket: websocketLimits(config),
    ready: runtime.ready,
    log,
    graphiql: true,
    introspection: true,
    metricsToken: config.metricsToken,
    metrics: runtime.metrics,
  });
  const url = await app.start(0);
  return {
    url,
    config,
    app,
    runtime,
    stop: async () => {
      await app.stop();
      await runtime.close();
    },
  };
}
