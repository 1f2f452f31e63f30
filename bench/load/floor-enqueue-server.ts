// A floor, not the product: the least code that does enqueueJob's durable work, as a hand-rolled REST
// enqueue would. A bare Node `http` server: per request it parses the JSON body, adds the job with
// BullMQ's `Queue.add` (the options the API's queues give every job), writes the job's history row
// through the same PostgreSQL function as the API's history writes (`job_history_insert`, one
// statement and one commit per request, on a pool of the API's size) and answers the job's id once the
// row is committed. No GraphQL, authentication, validation, rate limit or id reservation.
//
// POST /enqueue {"queue":"demo","name":"noop","data":{}} -> 200 {"id":"1"}. Reports its port over IPC.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Queue } from "bullmq";
import pg from "pg";
import { scriptInput } from "../lib/child.ts";

const input = scriptInput<{ redisUrl: string; prefix: string; databaseUrl: string }>();
const pool = new pg.Pool({ connectionString: input.databaseUrl, max: 10 });
const queues = new Map<string, Queue>();
const queueOf = (name: string) => {
  let q = queues.get(name);
  if (!q) {
    q = new Queue(name, { connection: { url: input.redisUrl }, prefix: input.prefix });
    queues.set(name, q);
  }
  return q;
};
await queueOf("demo").waitUntilReady();

async function enqueue(body: { queue: string; name: string; data?: unknown }): Promise<string> {
  const createdAt = Date.now();
  const job = await queueOf(body.queue).add(body.name, body.data ?? {}, {
    removeOnComplete: { age: 86_400, count: 10_000 },
    removeOnFail: { age: 604_800 },
    timestamp: createdAt,
  });
  const row = {
    queue: body.queue,
    id: job.id,
    name: body.name,
    data: body.data ?? {},
    state: "WAITING",
    attemptsMade: 0,
    maxAttempts: 1,
    priority: 0,
    createdAt,
  };
  await pool.query("SELECT job_history_insert($1::jsonb)", [JSON.stringify([row])]);
  return job.id as string;
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    let body: { queue: string; name: string; data?: unknown };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      res.writeHead(400).end();
      return;
    }
    enqueue(body).then(
      (id) => {
        const out = JSON.stringify({ id });
        res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(out) });
        res.end(out);
      },
      (err: unknown) => {
        res.writeHead(503, { "content-type": "text/plain" }).end(String(err));
      },
    );
  });
});
server.listen(0, "127.0.0.1", () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on("disconnect", () => process.exit(0));
