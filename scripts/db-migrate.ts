// `npm run db:migrate`: applies pending migrations to DATABASE_URL.
import { loadConfigOrExit } from "../src/config.ts";
import { applyMigrations } from "../src/infra/migrate.ts";

const config = loadConfigOrExit();
try {
  const applied = await applyMigrations(config.databaseUrl);
  console.log(applied.length > 0 ? `Applied: ${applied.join(", ")}` : "No pending migrations to apply.");
} catch (err) {
  console.error(`db:migrate failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
