import type { Config } from "../config.ts";
import { ensureDatabase, isMissingDatabase } from "./ensure-database.ts";
import { applyMigrations } from "./migrate.ts";

/**
 * What both processes do with the database at start: outside production, create it when missing;
 * then apply pending migrations (`migrate`: MIGRATE_ON_START unless told). Returns the migrations applied.
 * Throws an Error whose message is one line a person can act on.
 */
export async function prepareDatabase(
  config: Config,
  migrate: boolean = config.migrateOnStart,
): Promise<{ created: boolean; applied: string[] }> {
  const at = describeDatabase(config.databaseUrl);
  let created = false;
  try {
    if (config.nodeEnv !== "production") created = await ensureDatabase(config.databaseUrl);
    const applied = migrate ? await applyMigrations(config.databaseUrl) : [];
    return { created, applied };
  } catch (err) {
    if (isMissingDatabase(err)) {
      throw new Error(`database ${at} does not exist: create it (createdb), or fix DATABASE_URL`);
    }
    const code = (err as { code?: string }).code;
    if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "ETIMEDOUT" || code === "EAI_AGAIN") {
      throw new Error(`cannot reach PostgreSQL for ${at} (${code}): start it, or fix DATABASE_URL`);
    }
    if (code === "28P01" || code === "28000")
      throw new Error(`PostgreSQL refused the login for ${at}: check the user and password in DATABASE_URL`);
    throw new Error(`could not prepare database ${at} (set MIGRATE_ON_START=false to skip migrations): ${(err as Error).message}`);
  }
}

/** `"jobs" on 127.0.0.1:5432`, never the password. */
function describeDatabase(url: string): string {
  try {
    const u = new URL(url);
    return `"${decodeURIComponent(u.pathname.slice(1))}" on ${u.host}`;
  } catch {
    return "(DATABASE_URL)";
  }
}
