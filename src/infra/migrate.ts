import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";

/** The lock id Prisma's schema engine takes, so this and `prisma migrate deploy` never run at once. */
const MIGRATION_LOCK_ID = 72707369;

export const defaultMigrationsDir = path.resolve(import.meta.dirname, "../../prisma/migrations");

/**
 * Applies pending migrations from `prisma/migrations` with `pg` alone. It writes `_prisma_migrations`
 * exactly as Prisma's schema engine does (table, advisory lock, sha256 checksum, row lifecycle), so
 * the Prisma CLI can take over the same database. Returns the names it applied.
 */
export async function applyMigrations(databaseUrl: string, dir = defaultMigrationsDir): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_ID]);
    await client.query(`CREATE TABLE IF NOT EXISTS _prisma_migrations (
      id                      VARCHAR(36) PRIMARY KEY NOT NULL,
      checksum                VARCHAR(64) NOT NULL,
      finished_at             TIMESTAMPTZ,
      migration_name          VARCHAR(255) NOT NULL,
      logs                    TEXT,
      rolled_back_at          TIMESTAMPTZ,
      started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
      applied_steps_count     INTEGER NOT NULL DEFAULT 0
    )`);
    const { rows } = await client.query<{ migration_name: string; checksum: string; finished_at: Date | null }>(
      "SELECT migration_name, checksum, finished_at FROM _prisma_migrations WHERE rolled_back_at IS NULL ORDER BY started_at",
    );
    const failed = rows.filter((r) => r.finished_at === null).map((r) => r.migration_name);
    if (failed.length > 0) throw new Error(`P3009: failed migrations in the target database: ${failed.join(", ")}`);
    const applied = new Set(rows.map((r) => r.migration_name));
    const names = fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort((a, b) => a.localeCompare(b));
    const done: string[] = [];
    for (const name of names) {
      if (applied.has(name)) continue;
      const script = fs.readFileSync(path.join(dir, name, "migration.sql"), "utf8");
      const checksum = createHash("sha256").update(script).digest("hex");
      const id = randomUUID();
      await client.query("INSERT INTO _prisma_migrations (id, checksum, started_at, migration_name) VALUES ($1, $2, now(), $3)", [
        id,
        checksum,
        name,
      ]);
      try {
        // No parameters: the simple-query protocol runs the whole script in one implicit transaction.
        await client.query(script);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        await client.query("UPDATE _prisma_migrations SET logs = $1 WHERE id = $2", [message, id]);
        throw new Error(`migration ${name} failed: ${message}`);
      }
      await client.query("UPDATE _prisma_migrations SET applied_steps_count = applied_steps_count + 1, finished_at = now() WHERE id = $1", [
        id,
      ]);
      done.push(name);
    }
    return done;
  } finally {
    await client.end();
  }
}
