import { canSeeJob, canSeeQueue, type Principal } from "../access/principal.ts";
import type { Actor, EnqueueInput, JobService } from "../jobs/control/index.ts";
import { ForbiddenError, NotFoundError } from "../jobs/errors.ts";
import type { JobView } from "../jobs/job-view.ts";

/**
 * Tenants and queue limits as the resolvers apply them. Whatever the caller may not see answers
 * exactly as what does not exist: the same error class and the same message.
 */

export const noQueue = (queue: string) => new NotFoundError(`No queue named "${queue}"`);
export const noJob = (queue: string, id: string) => new NotFoundError(`No job "${id}" in queue "${queue}"`);

/** Throws the unknown-queue NotFoundError for a queue the caller may not see. */
export function assertQueueVisible(p: Principal, queue: string): void {
  if (!canSeeQueue(p, queue)) throw noQueue(queue);
}

/** The job when the caller may see it, else null (as if it did not exist). */
export function visibleJob(p: Principal, job: JobView | null | undefined): JobView | null {
  return job && canSeeJob(p, job) ? job : null;
}

/**
 * The tenant an enqueue runs for: a tenant-bound key's own (naming another is refused), else the one
 * an unbound key names on the input, if any.
 */
export function enqueueFor(p: Principal, input: EnqueueInput & { tenant?: string | null }, path: string[] = []): EnqueueInput {
  if (!canSeeQueue(p, input.queue))
    throw path.length ? new NotFoundError(`${path.join(".")}: No queue named "${input.queue}"`) : noQueue(input.queue);
  if (p.tenant === null) return input;
  if (input.tenant != null && input.tenant !== p.tenant) {
    throw new ForbiddenError(`${[...path, "tenant"].join(".")}: a tenant-bound key enqueues for its own tenant only`);
  }
  return { ...input, tenant: p.tenant };
}

/** The actor operator actions record: the key's name and the tenant it is bound to. */
export function actingAs(p: Principal): Actor {
  return { name: p.actor, tenant: p.tenant };
}

/**
 * Refuses a job the caller may not see, before a mutation or subscription acts on it: an unknown
 * queue's NotFoundError for a queue it may not see, the unknown job's for another tenant's job
 * (a job that does not exist is left to the operation, which answers the same).
 */
export async function assertJobVisible(p: Principal, jobs: JobService, queue: string, id: string): Promise<void> {
  assertQueueVisible(p, queue);
  if (p.tenant === null && p.job === null) return;
  const job = await jobs.getJob(queue, id);
  if (job && !canSeeJob(p, job)) throw noJob(queue, id);
}

/** What a paginated history read may show the caller: its tenant's rows, of its queues. */
export function accessFilter(p: Principal): { tenant?: string; queues?: readonly string[] } {
  return { ...(p.tenant !== null ? { tenant: p.tenant } : {}), ...(p.queues !== null ? { queues: p.queues } : {}) };
}

/** A bulk selection the caller may not see answers as one that does not exist (or has expired). */
export const noSelection = (id: string) =>
  new NotFoundError(`No bulk selection "${id}": unknown, or a dry run not confirmed in time (BULK_SELECTION_TTL_MS)`);

/**
 * Whether the caller could have made a bulk selection, and so may see and confirm it: a tenant-bound
 * key only its tenant's selections (a selection over every tenant is for unbound keys), a
 * queue-limited key only selections confined to its queues.
 */
export function canUseSelection(
  p: Principal,
  s: { tenant: string | null; scopeQueues: readonly string[]; queues: readonly string[] },
): boolean {
  if (p.job) return false;
  if (p.tenant !== null && s.tenant !== p.tenant) return false;
  if (p.queues !== null) {
    const limit = p.queues;
    if (s.scopeQueues.length === 0 || !s.scopeQueues.every((q) => limit.includes(q)) || !s.queues.every((q) => limit.includes(q)))
      return false;
  }
  return true;
}
