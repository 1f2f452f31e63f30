import { canSeeJob, canSeeQueue, type Principal } from "../access/principal.ts";
import type { EnqueueInput } from "../jobs/control/index.ts";
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
