// The bench's baseline for the hardening scenario: the API exactly as src/server/main.ts builds it,
// with the request protections of issue 14 off (AppDeps.protections = false). Never for use outside
// the bench: no configuration of the real entry point turns them off.
import { loadConfigOrExit } from "../../src/config.ts";
import { createLogger } from "../../src/infra/logger.ts";
import { buildAppFrom } from "../../src/server/compose.ts";
import { createApiRuntime } from "../../src/server/runtime.ts";

const config = loadConfigOrExit();
const log = createLogger(config.logLevel, { process: "api-unprotected" });
const runtime = await createApiRuntime(config, log);
const app = buildAppFrom(config, runtime, log, { graphiql: false, protections: false });
const url = await app.start(config.port, config.host);
process.stdout.write(`GraphQL API ready at ${url}\n`);
const stop = async () => {
  await app.stop();
  await runtime.close();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
