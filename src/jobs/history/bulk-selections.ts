import { randomUUID } from "node:crypto";
import { Prisma } from "../../generated/prisma/client.ts";
import type { Db } from "../../infra/prisma.ts";
import { BulkActionRunningError, InvalidStateError, SelectionTooLargeError, ValidationError, type ValidationIssue } from "../errors.ts";
import { resolveJobRows } from "./failed-job-inbox.ts";
import { type JobListFilter, jobFilterSql } from "./history-queries.ts";

export const BULK_ACTIONS = ["CANCEL", "RETRY", "REPLAY", "DISMISS_AUDIT"] as const;
export type BulkActionKind = (typeof BULK_ACTIONS)[number];
export const BULK_OUTCOMES = ["ACTED", "SKIPPED", "FAILED"] as const;
export type BulkOutcome = (typeof BULK_OUTCOMES)[number];

/** How long a finished action's selection (its per-job outcomes) is kept; its operator action stays for good. */
export const FINISHED_SELECTION_KEEP_MS = 24 * 3600 * 1000;

/** A frozen selection and, once confirmed, its run. */
export interface BulkSelectionView {
  id: string;
  action: BulkActionKind;
  status: "PENDING" | "RUNNING" | "DONE";
  actor: string;
  /** The tenant every selected job belongs to (the selecting key's or the filter's); null: any. */
  tenant: string | null;
  /** Queues the selecting key could select in; empty: every queue. */
  scopeQueues: string[];
  /** The queues of the selected jobs. */
  queues: string[];
  filter: unknown;
  total: number;
  processed: number;
  acted: number;
  skipped: number;
  failed: number;
  createdAt: Date;
  expiresAt: Date;
  confirmedAt: Date | null;
  confirmedBy: string | null;
  finishedAt: Date | null;
}

/** One job of a selection waiting for its outcome. `claimedState`: a batch found it so and began acting (then was cut short). */
export interface BulkSelectionItem {
  seq: number;
  queue: string;
  jobId: string;
  claimedState: string | null;
}

/** What a batch did to one job: ACTED / SKIPPED / FAILED, with the state it was in then (null: gone). */
export interface BulkItemResult {
  seq: number;
  outcome: BulkOutcome;
  state: string | null;
  detail?: string | null;
}

export interface BulkOutcomeView {
  seq: number;
  queue: string;
  jobId: string;
  outcome: BulkOutcome | null;
  state: string | null;
  detail: string | null;
}

type Tx = Prisma.TransactionClient;

const COLUMNS = Prisma.sql`id::text AS id, action, status, actor, tenant, scope_queues AS "scopeQueues", queues, filter, total,
  processed, acted, skipped, failed, created_at AS "createdAt", expires_at AS "expiresAt", confirmed_at AS "confirmedAt",
  confirmed_by AS "confirmedBy", finished_at AS "finishedAt"`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A selection id as given by a client: a UUID, else a ValidationError naming `path`. */
export function checkSelectionId(id: string, path: string[] = ["selectionId"]): string {
  if (!UUID.test(id)) throw ValidationError.at(path, "not a selection id (a UUID, as bulkJobAction's dry run answers it)");
  return id.toLowerCase();
}

/** Serialises confirmations, so two of them cannot both find their queues free. */
const CONFIRM_LOCK = 0x62756c6b; // "bulk"

/**
 * Bulk actions' selections in PostgreSQL (`bulk_selection`, `bulk_selection_job`): a dry run freezes
 * the ids a `jobs` filter matches, in one INSERT ... SELECT over job_history; a confirmed one is
 * worked through in batches, each job's outcome written once (`outcome IS NULL` guards every write,
 * so a batch done twice by two instances counts once). PostgreSQL, not Redis, so a selection and an
 * action under way outlive a Redis restart and any API instance.
 */
export class BulkSelectionStore {
  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
  }

  /**
   * Freezes the history rows matching `filter` (newest first, as `jobs` lists them) as a PENDING
   * selection expiring in `ttlMs`. Throws ValidationError for a bad filter, SelectionTooLargeError
   * (with the exact count) when it matches more than `max`: then nothing is kept.
   */
  async create(input: {
    action: BulkActionKind;
    actor: string;
    tenant: string | null;
    scopeQueues: readonly string[];
    filter: JobListFilter;
    /** The filter as the client gave it, kept for display. */
    given: unknown;
    max: number;
    ttlMs: number;
  }): Promise<BulkSelectionView> {
    const issues: ValidationIssue[] = [];
    const { range, rest, search } = jobFilterSql(input.filter, issues);
    if (issues.length > 0) throw ValidationError.of(issues);
    const conditions = [...range, ...rest];
    if (search) conditions.push(Prisma.sql`(id ILIKE ${search} OR failed_reason ILIKE ${search})`);
    const where = conditions.length > 0 ? Prisma.sql`WHERE ${Prisma.join(conditions, " AND ")}` : Prisma.empty;
    const id = randomUUID();
    const over = Symbol("over");
    try {
      return await this.db.$transaction(
        async (tx) => {
          await tx.$executeRaw(Prisma.sql`
            INSERT INTO bulk_selection (id, action, actor, tenant, scope_queues, queues, filter, total, expires_at)
            VALUES (${id}::uuid, ${input.action}, ${input.actor}, ${input.tenant}, ${[...input.scopeQueues]}::text[], '{}',
              ${JSON.stringify(input.given ?? {})}::jsonb, 0, now() + ${input.ttlMs} * interval '1 millisecond')`);
          const n = await tx.$executeRaw(Prisma.sql`
            INSERT INTO bulk_selection_job (selection_id, seq, queue, job_id)
            SELECT ${id}::uuid, row_number() OVER (ORDER BY created_at DESC, id DESC, queue DESC), queue, id
            FROM (SELECT created_at, id, queue FROM job_history ${where}
                  ORDER BY created_at DESC, id DESC, queue DESC LIMIT ${input.max + 1}) matched`);
          if (n > input.max) throw over;
          const [row] = await tx.$queryRaw<BulkSelectionView[]>(Prisma.sql`
            UPDATE bulk_selection SET total = ${n},
              queues = COALESCE((SELECT array_agg(DISTINCT queue ORDER BY queue) FROM bulk_selection_job WHERE selection_id = ${id}::uuid), '{}')
            WHERE id = ${id}::uuid RETURNING ${COLUMNS}`);
          return row as BulkSelectionView;
        },
        { timeout: 60_000 },
      );
    } catch (err) {
      if (err !== over) throw err;
      const [count] = await this.db.$queryRaw<{ n: number }[]>(Prisma.sql`SELECT count(*)::int AS n FROM job_history ${where}`);
      throw new SelectionTooLargeError(count?.n ?? input.max + 1, input.max);
    }
  }

  /** The selection, expired or not; null when there is none (or it was swept). */
  async get(id: string): Promise<BulkSelectionView | null> {
    const [row] = await this.db.$queryRaw<BulkSelectionView[]>(Prisma.sql`SELECT ${COLUMNS} FROM bulk_selection WHERE id = ${id}::uuid`);
    return row ?? null;
  }

  /** The first `n` jobs of a selection, in selection order. */
  async sample(id: string, n: number): Promise<{ queue: string; id: string }[]> {
    return this.db.$queryRaw<{ queue: string; id: string }[]>(Prisma.sql`
      SELECT queue, job_id AS id FROM bulk_selection_job WHERE selection_id = ${id}::uuid ORDER BY seq LIMIT ${n}`);
  }

  /**
   * PENDING -> RUNNING, once: under a lock that serialises confirmations, so two actions never run on
   * one queue at once. `visible` decides whether the caller may see the selection at all. Throws
   * `unknown()` for a missing, expired or invisible selection, InvalidStateError for one confirmed
   * already, BulkActionRunningError when another action runs on one of its queues.
   */
  async confirm(id: string, by: string, visible: (s: BulkSelectionView) => boolean, unknown: () => Error): Promise<BulkSelectionView> {
    return this.db.$transaction(async (tx) => {
      await tx.$executeRaw(Prisma.sql`SELECT pg_advisory_xact_lock(${CONFIRM_LOCK})`);
      const [row] = await tx.$queryRaw<(BulkSelectionView & { expired: boolean })[]>(Prisma.sql`
        SELECT ${COLUMNS}, expires_at <= now() AS expired FROM bulk_selection WHERE id = ${id}::uuid FOR UPDATE`);
      if (!row || !visible(row) || (row.status === "PENDING" && row.expired)) throw unknown();
      if (row.status !== "PENDING") {
        throw new InvalidStateError(`Bulk action "${id}" was confirmed already (it is ${row.status}): a selection is acted on once`, null);
      }
      if (row.queues.length > 0) {
        const [busy] = await tx.$queryRaw<{ queue: string }[]>(Prisma.sql`
          SELECT q AS queue FROM bulk_selection s, unnest(s.queues) q
          WHERE s.status = 'RUNNING' AND s.queues && ${row.queues}::text[] AND q = ANY(${row.queues}::text[]) ORDER BY q LIMIT 1`);
        if (busy) throw new BulkActionRunningError(busy.queue);
      }
      const [updated] = await tx.$queryRaw<BulkSelectionView[]>(Prisma.sql`
        UPDATE bulk_selection SET status = 'RUNNING', confirmed_at = now(), confirmed_by = ${by}
        WHERE id = ${id}::uuid RETURNING ${COLUMNS}`);
      return updated as BulkSelectionView;
    });
  }

  /** Ids of the actions under way (confirmed, not done): what an API instance looks for to resume. */
  async running(): Promise<string[]> {
    const rows = await this.db.$queryRaw<{ id: string }[]>(Prisma.sql`SELECT id::text AS id FROM bulk_selection WHERE status = 'RUNNING'`);
    return rows.map((r) => r.id);
  }

  /** The next `n` jobs without an outcome, in selection order. */
  async nextBatch(id: string, n: number): Promise<BulkSelectionItem[]> {
    return this.db.$queryRaw<BulkSelectionItem[]>(Prisma.sql`
      SELECT seq, queue, job_id AS "jobId", claimed_state AS "claimedState" FROM bulk_selection_job
      WHERE selection_id = ${id}::uuid AND outcome IS NULL ORDER BY seq LIMIT ${n}`);
  }

  /** Notes, before acting, the state each job was found in: a batch cut short is checked again from it. */
  async claim(id: string, items: readonly { seq: number; state: string }[]): Promise<void> {
    if (items.length === 0) return;
    await this.db.$executeRaw(Prisma.sql`
      UPDATE bulk_selection_job j SET claimed_state = c.state
      FROM unnest(${items.map((i) => i.seq)}::int[], ${items.map((i) => i.state)}::text[]) AS c(seq, state)
      WHERE j.selection_id = ${id}::uuid AND j.seq = c.seq AND j.outcome IS NULL`);
  }

  /**
   * Writes outcomes of jobs that have none yet and adds them to the selection's counts, in one
   * statement; returns the selection as it is then. A job whose outcome was written already (by
   * another instance that held the action before) is left as it is and not counted again.
   */
  async record(id: string, results: readonly BulkItemResult[], tx: Tx | Db = this.db): Promise<BulkSelectionView> {
    const [row] = await tx.$queryRaw<BulkSelectionView[]>(Prisma.sql`
      WITH done AS (
        UPDATE bulk_selection_job j SET outcome = r.outcome, state = r.state, detail = r.detail
        FROM unnest(${results.map((r) => r.seq)}::int[], ${results.map((r) => r.outcome)}::text[],
                    ${results.map((r) => r.state)}::text[], ${results.map((r) => r.detail ?? null)}::text[]) AS r(seq, outcome, state, detail)
        WHERE j.selection_id = ${id}::uuid AND j.seq = r.seq AND j.outcome IS NULL
        RETURNING j.outcome
      )
      UPDATE bulk_selection SET
        processed = processed + (SELECT count(*) FROM done),
        acted = acted + (SELECT count(*) FILTER (WHERE outcome = 'ACTED') FROM done),
        skipped = skipped + (SELECT count(*) FILTER (WHERE outcome = 'SKIPPED') FROM done),
        failed = failed + (SELECT count(*) FILTER (WHERE outcome = 'FAILED') FROM done)
      WHERE id = ${id}::uuid RETURNING ${COLUMNS}`);
    if (!row) throw new Error(`bulk selection ${id} is gone`);
    return row;
  }

  /**
   * DISMISS_AUDIT of a batch, all in one transaction with its outcomes (nothing to redo after a
   * restart): each job's unresolved failed-job audit rows become DISMISSED by `actor` (the inbox's own
   * resolveJobRows); a job that had
   * some is ACTED, one that had none SKIPPED (with its history state, null when the row is gone).
   */
  async dismissBatch(id: string, items: readonly BulkSelectionItem[], actor: string): Promise<BulkSelectionView> {
    return this.db.$transaction(async (tx) => {
      const seqs = items.map((i) => i.seq);
      // Lock the batch's rows: an instance that lost the lease and wakes up waits here, then finds them done.
      const open = await tx.$queryRaw<{ seq: number; queue: string; jobId: string; state: string | null }[]>(Prisma.sql`
        SELECT j.seq, j.queue, j.job_id AS "jobId", h.state::text AS state
        FROM bulk_selection_job j LEFT JOIN job_history h ON h.queue = j.queue AND h.id = j.job_id
        WHERE j.selection_id = ${id}::uuid AND j.seq = ANY(${seqs}::int[]) AND j.outcome IS NULL
        ORDER BY j.seq FOR UPDATE OF j`);
      const dismissed = await resolveJobRows(
        tx,
        open.map((o) => ({ queue: o.queue, id: o.jobId })),
        "DISMISSED",
        actor,
      );
      const hits = new Map(dismissed.map((d) => [`${d.queue}\u0000${d.jobId}`, d.n]));
      const results: BulkItemResult[] = open.map((o) => {
        const n = hits.get(`${o.queue}\u0000${o.jobId}`) ?? 0;
        return n > 0
          ? { seq: o.seq, outcome: "ACTED", state: o.state, detail: `${n} audit row${n === 1 ? "" : "s"} dismissed` }
          : { seq: o.seq, outcome: "SKIPPED", state: o.state, detail: "no unresolved failed-job audit row" };
      });
      return this.record(id, results, tx);
    });
  }

  /**
   * RUNNING -> DONE, once, in `tx` (with the operator action the caller writes there); null when it
   * was not RUNNING (another instance finished it). A finished selection is kept FINISHED_SELECTION_KEEP_MS.
   */
  async finish(id: string, tx: Tx): Promise<BulkSelectionView | null> {
    const [row] = await tx.$queryRaw<BulkSelectionView[]>(Prisma.sql`
      UPDATE bulk_selection SET status = 'DONE', finished_at = now(), expires_at = now() + ${FINISHED_SELECTION_KEEP_MS} * interval '1 millisecond'
      WHERE id = ${id}::uuid AND status = 'RUNNING' RETURNING ${COLUMNS}`);
    return row ?? null;
  }

  /** How many jobs ended each way, per outcome and state then (`state` null: the job was gone). */
  async outcomeCounts(id: string): Promise<{ outcome: BulkOutcome; state: string | null; count: number }[]> {
    return this.db.$queryRaw(Prisma.sql`
      SELECT outcome, state, count(*)::int AS count FROM bulk_selection_job
      WHERE selection_id = ${id}::uuid AND outcome IS NOT NULL GROUP BY outcome, state ORDER BY outcome, state`);
  }

  /** `outcomeCounts` per queue of the selection's jobs (for its operator actions, one per queue). */
  async outcomeCountsByQueue(id: string): Promise<{ queue: string; outcome: BulkOutcome; state: string | null; count: number }[]> {
    return this.db.$queryRaw(Prisma.sql`
      SELECT queue, outcome, state, count(*)::int AS count FROM bulk_selection_job
      WHERE selection_id = ${id}::uuid AND outcome IS NOT NULL GROUP BY queue, outcome, state ORDER BY queue, outcome, state`);
  }

  /** Jobs of a selection with their outcome, in selection order, after position `afterSeq`. */
  async outcomes(id: string, filter: { outcome?: BulkOutcome | null; afterSeq: number; first: number }): Promise<BulkOutcomeView[]> {
    return this.db.$queryRaw(Prisma.sql`
      SELECT seq, queue, job_id AS "jobId", outcome, state, detail FROM bulk_selection_job
      WHERE selection_id = ${id}::uuid AND seq > ${filter.afterSeq}
        ${filter.outcome ? Prisma.sql`AND outcome = ${filter.outcome}` : Prisma.empty}
      ORDER BY seq LIMIT ${filter.first}`);
  }

  /** Deletes selections past their expiry that are not running (their jobs' rows go with them); returns how many. */
  async sweep(): Promise<number> {
    return this.db.$executeRaw(Prisma.sql`DELETE FROM bulk_selection WHERE expires_at < now() AND status <> 'RUNNING'`);
  }
}
