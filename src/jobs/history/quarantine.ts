import type pg from "pg";
import type { RedisClient } from "../../infra/redis.ts";
import { type KeySpace, keys } from "../bullmq/keys.ts";

/**
 * True for an error that says PostgreSQL refused the data itself (SQLSTATE class 22, "data
 * exception": a NUL character in jsonb or text, a number out of range; 54000: a value too large),
 * as opposed to PostgreSQL being unreachable or failing: only the first is worth retrying row by
 * row, and only a row refused on its own is unwritable. Works on node-postgres errors (`code`) and
 * Prisma's (the code in `meta` or in the message).
 */
export function isDataError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { code?: unknown; meta?: { code?: unknown } };
  const code =
    (typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined) ??
    (typeof e.meta?.code === "string" ? e.meta.code : undefined) ??
    /Code: `([0-9A-Z]{5})`/.exec(e.message)?.[1];
  return code !== undefined && (code.startsWith("22") || code === "54000");
}

/** What a quarantined row was: a history row, a failure audit row, or a ledger record from Redis. */
export type QuarantineKind = "history" | "audit" | "ledger";

/** Text PostgreSQL's text type accepts: NUL characters written out as `\u0000`. */
const storable = (s: string) => s.replaceAll("\u0000", "\\u0000");

/**
 * Rows PostgreSQL refused on their own (see isDataError), kept instead of lost: in Redis, a hash per
 * queue (`<queue prefix>:<queue>:quarantine`, field `<kind>:<job id>`, the row as JSON) that the reconciler
 * consults to skip them, and in PostgreSQL (`history_quarantine`, the row as text, NUL escaped) for
 * whoever repairs them. The `history_quarantined` gauge counts the Redis entries per queue (alert
 * rule `HistoryRowsQuarantined` in deploy/prometheus/alerts.yml). Never throws: quarantining is itself
 * best effort, and a failure is logged by the caller's `onError`.
 */
export class HistoryQuarantine {
  private readonly pool: pg.Pool;
  private readonly redis: RedisClient | null;
  private readonly space: KeySpace;
  private readonly onError: (err: unknown) => void;

  constructor(pool: pg.Pool, redis: RedisClient | null, space: KeySpace, onError: (err: unknown) => void = () => {}) {
    this.pool = pool;
    this.redis = redis;
    this.space = space;
    this.onError = onError;
  }

  key(queue: string): string {
    return keys.quarantine(this.space, queue);
  }

  async put(kind: QuarantineKind, queue: string, jobId: string, row: unknown, reason: unknown): Promise<void> {
    const text = JSON.stringify(row) ?? "null";
    const error = storable(reason instanceof Error ? reason.message : String(reason)).slice(0, 2000);
    try {
      await this.redis?.hset(this.key(queue), `${kind}:${jobId}`, text);
    } catch (err) {
      this.onError(err);
    }
    try {
      await this.pool.query(
        "INSERT INTO history_quarantine (id, kind, queue, job_id, row, error) VALUES (gen_random_uuid(), $1, $2, $3, $4, $5)",
        [kind, storable(queue), storable(jobId), text, error],
      );
    } catch (err) {
      this.onError(err);
    }
  }

  /** Whether the job has a quarantined row (of any kind): the reconciler skips it. */
  async has(queue: string, jobId: string): Promise<boolean> {
    if (!this.redis) return false;
    const [history, audit, ledger] = await Promise.all(
      (["history", "audit", "ledger"] as const).map((kind) => this.redis?.hexists(this.key(queue), `${kind}:${jobId}`)),
    );
    return Boolean(history || audit || ledger);
  }

  /** Quarantined rows of a queue in Redis (the `history_quarantined` gauge). */
  count(queue: string): Promise<number> {
    return this.redis ? this.redis.hlen(this.key(queue)) : Promise.resolve(0);
  }
}
