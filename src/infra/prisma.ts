import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "../generated/prisma/client.ts";

export type Db = PrismaClient;

const pools = new WeakMap<Db, pg.Pool>();

/**
 * The Prisma client on the `pg` driver adapter: no engine binary, and no session state, so a
 * transaction-mode pooler (PgBouncer) in front of PostgreSQL works. The connection pool is ours,
 * lent to the adapter, so the hottest statement (a batch of history rows, see history.ts) can run on
 * it without Prisma's per-statement work; `$disconnect` ends it.
 */
export function createPrisma(databaseUrl: string, options: { max?: number } = {}): Db {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: options.max ?? 10, connectionTimeoutMillis: 2_000 });
  // An idle connection the server dropped (a restart, a failover): the pool opens a new one when
  // needed, and the next statement on a dead one fails and is handled where it was sent.
  pool.on("error", () => {});
  const db = new PrismaClient({ adapter: new PrismaPg(pool, { disposeExternalPool: true }) });
  pools.set(db, pool);
  return db;
}

/**
 * The pool under a client from `createPrisma`, for statements sent as they are, with the driver's
 * own encoding and none of Prisma's per-statement work (its raw-query path cost a busy worker ~4 µs
 * of CPU and ~700 bytes of garbage per job). Only for plain parameterised SQL, no session state.
 */
export function poolOf(db: Db): pg.Pool {
  const pool = pools.get(db);
  if (!pool) throw new Error("poolOf: this Prisma client was not made by createPrisma");
  return pool;
}
