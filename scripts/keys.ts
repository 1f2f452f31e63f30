// `npm run keys -- create|list|revoke`: API keys without GraphQL (the first key, and operators).
//   create --name N --scopes read,enqueue[,control,admin] [--tenant T] [--queues q1,q2]
//   list
//   revoke <id or name>
// The secret of a new key is printed once; only its hash is stored. A revoked key stops working on
// every API instance at once (Redis pub/sub), within 5 s at worst (their key cache lasts 4 s).
import { parseArgs } from "node:util";
import { ApiKeyStore, type ApiKeyView } from "../src/access/api-key-store.ts";
import { revocationChannel } from "../src/access/revocation-bus.ts";
import { loadConfigOrExit } from "../src/config.ts";
import { createPrisma } from "../src/infra/prisma.ts";
import { closeRedis, createRedis } from "../src/infra/redis.ts";
import { NotFoundError, ValidationError } from "../src/jobs/errors.ts";
import { createRegistry, defaultDefinitions } from "../src/jobs/registry.ts";

const USAGE = `usage:
  npm run keys -- create --name <name> --scopes read,enqueue,control,admin [--tenant <tenant>] [--queues <q1,q2>]
  npm run keys -- list
  npm run keys -- revoke <id or name>`;

function describe(k: ApiKeyView): string {
  return [
    k.id,
    k.name,
    k.prefix,
    k.scopes.join(","),
    `tenant=${k.tenant ?? "-"}`,
    `queues=${k.queues?.join(",") ?? "*"}`,
    `created=${k.createdAt.toISOString()}`,
    `lastUsed=${k.lastUsedAt?.toISOString() ?? "-"}`,
    k.revokedAt ? `REVOKED ${k.revokedAt.toISOString()}` : "active",
  ].join("  ");
}

const [command, ...rest] = process.argv.slice(2);
let parsed: ReturnType<typeof parseArgs>;
try {
  parsed = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { name: { type: "string" }, scopes: { type: "string" }, tenant: { type: "string" }, queues: { type: "string" } },
  });
} catch (err) {
  console.error(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
  process.exit(2);
}
if (command !== "create" && command !== "list" && command !== "revoke") {
  console.error(USAGE);
  process.exit(2);
}

const config = loadConfigOrExit();
const registry = createRegistry(defaultDefinitions({ demoQueue: config.demoQueue }));
const db = createPrisma(config.databaseUrl, { max: 1 });
const store = new ApiKeyStore(db, (q) => registry.hasQueue(q));
const list = (v: unknown) => (typeof v === "string" ? v.split(",").map((s) => s.trim()) : undefined);
try {
  if (command === "create") {
    const o = parsed.values;
    const { apiKey, secret } = await store.create({
      name: typeof o.name === "string" ? o.name : "",
      scopes: (list(o.scopes) ?? []).map((s) => s.toUpperCase()),
      tenant: typeof o.tenant === "string" ? o.tenant : null,
      queues: list(o.queues) ?? null,
    });
    console.log(describe(apiKey));
    console.log(`secret (shown once, store it now): ${secret}`);
  } else if (command === "list") {
    for (const k of await store.list()) console.log(describe(k));
  } else {
    const target = parsed.positionals[0];
    if (!target) {
      console.error(USAGE);
      process.exitCode = 2;
    } else {
      const key = await store.revoke(target);
      console.log(describe(key));
      // Tell the running API instances now (they would stop accepting it within 4 s anyway).
      const redis = createRedis(config, "request");
      redis.on("error", () => {});
      try {
        await redis.publish(revocationChannel(config.queuePrefix), key.id);
      } catch (err) {
        console.error(
          `could not tell the API instances over Redis (${err instanceof Error ? err.message : String(err)}); they stop accepting the key within 4 s`,
        );
      } finally {
        await closeRedis(redis);
      }
    }
  }
} catch (err) {
  if (err instanceof ValidationError) {
    for (const i of err.issues) console.error(`${i.path.join(".") || "input"}: ${i.message}`);
    process.exitCode = 1;
  } else if (err instanceof NotFoundError) {
    console.error(err.message);
    process.exitCode = 1;
  } else {
    console.error(`keys ${command} failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
} finally {
  await db.$disconnect();
}
