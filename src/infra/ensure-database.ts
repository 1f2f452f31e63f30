import pg from "pg";

/** True when the error is PostgreSQL's "database does not exist". */
export function isMissingDatabase(err: unknown): boolean {
  return (err as { code?: string }).code === "3D000";
}

/**
 * Creates the database `url` names when it does not exist, connecting to the server's `postgres`
 * database to do it. Returns true when it created it. Two processes racing are fine.
 */
export async function ensureDatabase(url: string): Promise<boolean> {
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await probe.connect();
    return false;
  } catch (err) {
    if (!isMissingDatabase(err)) throw err;
  } finally {
    await probe.end().catch(() => undefined);
  }
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  target.pathname = "/postgres";
  const admin = new pg.Client({ connectionString: target.toString(), connectionTimeoutMillis: 5_000 });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === "42P04") return false; // created by the other process meanwhile
    throw err;
  } finally {
    await admin.end().catch(() => undefined);
  }
}
