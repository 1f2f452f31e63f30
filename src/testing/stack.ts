import { Queue } from "bullmq";
import { startTestApi, type TestApi } from "./api.ts";
import { createTestDatabase } from "./database.ts";
import { killAll, type RunningProcess, startWorker } from "./processes.ts";
import { bullPrefix, deletePrefix, testRedisUrl, uniquePrefix } from "./redis.ts";

/** A whole deployment for one test file: its own database and key prefix, the API in this process, a worker process. */
export interface TestStack {
  /** The environment both processes got (DATABASE_URL, REDIS_URL, QUEUE_PREFIX and the extras). */
  env: Record<string, string>;
  prefix: string;
  databaseUrl: string;
  api: TestApi;
  worker: RunningProcess | null;
  /** A BullMQ handle on the demo queue, for checking what Redis really holds. */
  queue: Queue;
  /** Stops everything, removes the database and the keys, and fails if a process was left running. */
  stop(): Promise<void>;
}

export async function startTestStack(
  options: { worker?: boolean; env?: Record<string, string>; workerEnv?: Record<string, string> } = {},
): Promise<TestStack> {
  const db = await createTestDatabase();
  const prefix = uniquePrefix();
  const env = { DATABASE_URL: db.url, REDIS_URL: testRedisUrl, QUEUE_PREFIX: prefix, ...options.env };
  const [api, worker] = await Promise.all([
    startTestApi(env),
    options.worker === false ? Promise.resolve(null) : startWorker({ ...env, ...options.workerEnv }),
  ]);
  const queue = new Queue("demo", { connection: { url: testRedisUrl }, prefix: bullPrefix(prefix, "demo") });
  return {
    env,
    prefix,
    databaseUrl: db.url,
    api,
    worker,
    queue,
    stop: async () => {
      await queue.close();
      await worker?.stop();
      await api.stop();
      const leftBehind = await killAll();
      await deletePrefix(prefix);
      await db.drop();
      if (leftBehind.length > 0) throw new Error(`processes left running: ${leftBehind.join(", ")}`);
    },
  };
}
