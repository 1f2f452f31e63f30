// `npm run redis:migrate-layout -- [--dry-run]`: moves every queue's Redis keys from the other key
// layout into the one REDIS_KEY_LAYOUT names (README: Key layout). With the default per-queue layout
// it moves `{jobs}:<queue>:*` and `{jobs}:relay:<queue>:*` to `{jobs:<queue>}:...`; with
// REDIS_KEY_LAYOUT=single it moves them back. Run it with every API and worker process stopped, with
// the same QUEUE_PREFIX, REDIS_URL / REDIS_CLUSTER_NODES and JOBS_MODULE as they use.
//
// Each key is copied with DUMP / RESTORE (value and TTL as they were), then the old one deleted: no
// command spans two keys, so it works across a cluster's shards. It refuses to start while a worker is
// connected to a queue of the old layout, or while the new layout already holds keys of a queue (two
// job-id counters and two event streams cannot be merged). Running it again after an interruption
// goes on where it stopped: a key already moved is gone from the old layout.
import { parseArgs } from "node:util";
import { Queue } from "bullmq";
import type { Cluster, Redis } from "ioredis";
import { loadConfigOrExit } from "../src/config.ts";
import { bullConnection, closeRedis, createRedis, type RedisClient } from "../src/infra/redis.ts";
import { type KeySpace, keySpace, keys, queuePrefix } from "../src/jobs/bullmq/index.ts";
import { loadJobTypes } from "../src/jobs/jobs-module.ts";

const { values } = parseArgs({ options: { "dry-run": { type: "boolean", default: false } } });
const dryRun = values["dry-run"] ?? false;
const config = loadConfigOrExit();
const to = keySpace(config.queuePrefix, config.redisKeyLayout);
const from = keySpace(config.queuePrefix, to.layout === "single" ? "per-queue" : "single");
const { registry } = await loadJobTypes({ demoQueue: config.demoQueue, jobsModule: config.jobsModule });
const redis = createRedis(config, "request");

/** SCAN over every master (one Redis: itself). */
async function scan(client: RedisClient, pattern: string): Promise<string[]> {
  const nodes: (Redis | Cluster)[] = "nodes" in client && typeof client.nodes === "function" ? client.nodes("master") : [client];
  const found: string[] = [];
  for (const node of nodes) {
    let cursor = "0";
    do {
      const [next, page] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      found.push(...page);
    } while (cursor !== "0");
  }
  return found;
}

const literal = (s: string) => s.replace(/[*?[\]\\]/g, "\\$&");

/** The keys of `queue` in `space`: BullMQ's and ours (`<queue prefix>:<queue>:*`) and the relay's. */
async function keysOf(space: KeySpace, queue: string): Promise<string[]> {
  const p = literal(queuePrefix(space, queue));
  const all = [...(await scan(redis, `${p}:${queue}:*`)), ...(await scan(redis, `${p}:relay:${queue}:*`))];
  // The recovery epoch is not moved: the first recovery pass on the new layout writes its own.
  const epoch = keys.recoveryEpoch(space, queue);
  return [...new Set(all)].filter((k) => k !== epoch);
}

function renamed(key: string, queue: string): string {
  return queuePrefix(to, queue) + key.slice(queuePrefix(from, queue).length);
}

let moved = 0;
let problems = 0;
try {
  if (from.base === to.base && registry.queues().every((q) => queuePrefix(from, q) === queuePrefix(to, q))) {
    throw new Error("both layouts name the same keys for every queue: nothing to move");
  }
  const plan: { queue: string; keys: string[] }[] = [];
  for (const queue of registry.queues()) {
    const old = await keysOf(from, queue);
    if (old.length === 0) continue;
    const bull = new Queue(queue, { connection: bullConnection(config), prefix: queuePrefix(from, queue), skipWaitingForReady: true });
    const workers = await bull.getWorkersCount().finally(() => bull.close());
    if (workers > 0) {
      process.stderr.write(
        `error: queue "${queue}": ${workers} worker connection(s) still use the ${from.layout} layout; stop every worker and API first\n`,
      );
      problems++;
    }
    const already = await keysOf(to, queue);
    if (already.length > 0) {
      process.stderr.write(
        `error: queue "${queue}": the ${to.layout} layout already holds ${already.length} key(s) (e.g. ${already[0]}); a process ran on it already. Move its jobs by hand or delete those keys first\n`,
      );
      problems++;
    }
    plan.push({ queue, keys: old });
  }
  if (problems > 0) process.exit(1);
  for (const { queue, keys: old } of plan) {
    process.stdout.write(
      `${queue}: ${old.length} key(s) ${queuePrefix(from, queue)} -> ${queuePrefix(to, queue)}${dryRun ? " (dry run)" : ""}\n`,
    );
    if (dryRun) continue;
    for (let i = 0; i < old.length; i += 200) {
      await Promise.all(
        old.slice(i, i + 200).map(async (key) => {
          const [dump, pttl] = await Promise.all([redis.dumpBuffer(key), redis.pttl(key)]);
          if (dump === null) return; // gone meanwhile (expired)
          await redis.restore(renamed(key, queue), pttl > 0 ? pttl : 0, dump);
          await redis.del(key);
          moved++;
        }),
      );
    }
  }
  process.stdout.write(
    `${dryRun ? "would move" : "moved"} ${dryRun ? plan.reduce((n, p) => n + p.keys.length, 0) : moved} key(s); REDIS_KEY_LAYOUT=${to.layout}\n`,
  );
} catch (err) {
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
} finally {
  await closeRedis(redis);
}
