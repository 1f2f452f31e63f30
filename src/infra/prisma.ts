import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../generated/prisma/client.ts";

export type Db = PrismaClient;

/**
 * The Prisma client on the `pg` driver adapter: no engine binary, and no session state, so a
 * transaction-mode pooler (PgBouncer) in front of PostgreSQL works.
 */
export function createPrisma(databaseUrl: string, options: { max?: number } = {}): Db {
  const adapter = new PrismaPg({ connectionString: databaseUrl, max: options.max ?? 10, connectionTimeoutMillis: 2_000 });
  return new PrismaClient({ adapter });
}
