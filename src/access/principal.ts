/** Who a request acts as, and what it may see and do (runtime contract: "Access rules"). */

export const SCOPES = ["READ", "ENQUEUE", "CONTROL", "ADMIN"] as const;
export type Scope = (typeof SCOPES)[number];

export const CREDENTIAL_KINDS = ["ANONYMOUS", "ADMIN_ENV", "API_KEY", "JOB_TOKEN"] as const;
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

export interface Principal {
  kind: CredentialKind;
  /** The key's name, "admin" (ADMIN_API_KEY), "anonymous" (auth open) or "job-token". */
  actor: string;
  scopes: readonly Scope[];
  /** Bound to this tenant: sees and touches its jobs only. */
  tenant: string | null;
  /** Limited to these queues; null: every queue. */
  queues: readonly string[] | null;
  /** The API key's id (for a job token: the issuing key's); null for the environment's admin key and anonymous. */
  keyId: string | null;
  /** A job token's one job. */
  job: { queue: string; id: string } | null;
}

export const ANONYMOUS: Principal = Object.freeze({
  kind: "ANONYMOUS",
  actor: "anonymous",
  scopes: SCOPES,
  tenant: null,
  queues: null,
  keyId: null,
  job: null,
});

export const ADMIN_ENV: Principal = Object.freeze({
  kind: "ADMIN_ENV",
  actor: "admin",
  scopes: SCOPES,
  tenant: null,
  queues: null,
  keyId: null,
  job: null,
});

/** ADMIN implies every scope. */
export function hasScope(p: Principal, scope: Scope): boolean {
  return p.scopes.includes(scope) || p.scopes.includes("ADMIN");
}

/** Whether the caller may see `queue` at all (queue-limited keys, job tokens). */
export function canSeeQueue(p: Principal, queue: string): boolean {
  if (p.job) return p.job.queue === queue;
  return p.queues === null || p.queues.includes(queue);
}

/** Whether the caller may see this job: its queue, its tenant, a job token's one job. */
export function canSeeJob(p: Principal, job: { queue: string; id: string; tenant: string | null }): boolean {
  if (!canSeeQueue(p, job.queue)) return false;
  if (p.job && p.job.id !== job.id) return false;
  return p.tenant === null || job.tenant === p.tenant;
}

/** The queues of `all` the caller may see. */
export function visibleQueues(p: Principal, all: readonly string[]): string[] {
  return all.filter((q) => canSeeQueue(p, q));
}
