// `npm run db:migrate`: applies pending migrations to DATABASE_URL (creating the database first
// outside production, as the API and the worker do).
import { loadConfigOrExit } from "../src/config.ts";
import { prepareDatabase } from "../src/infra/prepare-database.ts";

const config = loadConfigOrExit();
try {
  const { created, applied } = await prepareDatabase(config, true);
  if (created) console.log("Created the database.");
  console.log(applied.length > 0 ? `Applied: ${applied.join(", ")}` : "No pending migrations to apply.");
} catch (err) {
  console.error(`db:migrate failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
