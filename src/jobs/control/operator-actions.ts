import type { Prisma } from "../../generated/prisma/client.ts";
import type { Logger } from "../../infra/logger.ts";
import type { Db } from "../../infra/prisma.ts";

/** Who acts: the API key's name ("anonymous" while auth is open), with the tenant the key is bound to, if any. */
export type Actor = string | { name: string; tenant: string | null };

export function actorName(actor: Actor): string {
  return typeof actor === "string" ? actor : actor.name;
}

export function actorTenant(actor: Actor): string | null {
  return typeof actor === "string" ? null : actor.tenant;
}

export interface OperatorActionInput {
  /** Recorded as `actor` (the name) and `tenant` (a tenant-bound key sees only its tenant's actions). */
  actor: Actor;
  /** The mutation's name: "cancelJob", "retryJob", "pauseQueue" ... */
  action: string;
  queue: string;
  jobId?: string | null;
  /** A bulk action's selection: its rows (one per queue it touched) share it. */
  selectionId?: string | null;
  details?: Record<string, unknown>;
}

/**
 * The operator audit trail: one row per control action taken through the API (enqueues excluded),
 * written in the request that took it, after the action succeeded.
 */
export class OperatorActionLog {
  private readonly db: Db;
  private readonly log: Logger;

  constructor(db: Db, log: Logger) {
    this.db = db;
    this.log = log;
  }

  /**
   * Records an action. The action has already happened when this runs, so a failed write is logged
   * with everything needed to reconstruct the row, and the mutation still answers with its result.
   */
  async record(input: OperatorActionInput): Promise<void> {
    try {
      await this.recordIn(this.db, input);
    } catch (err) {
      this.log.error("operator action could not be recorded", { ...input, err });
    }
  }

  /**
   * Records an action inside the caller's transaction, throwing when it cannot: for an action whose
   * end and audit row must commit together (a bulk action's DONE, written once).
   */
  async recordIn(tx: Prisma.TransactionClient | Db, input: OperatorActionInput): Promise<void> {
    await tx.operatorAction.create({
      data: {
        actor: actorName(input.actor),
        tenant: actorTenant(input.actor),
        action: input.action,
        queue: input.queue,
        jobId: input.jobId ?? null,
        selectionId: input.selectionId ?? null,
        details: (input.details ?? {}) as object,
      },
    });
  }
}
