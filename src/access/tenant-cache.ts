/**
 * Jobs' tenants, read once per API instance: a tenant-bound subscriber of `queueEvents` needs the
 * tenant of each event's job, and most events (ADDED, ACTIVE, PROGRESS) don't carry the job. One
 * read per job per instance, shared by every subscriber; a job's tenant never changes. Bounded: the
 * oldest entries go first.
 */
export class TenantCache {
  /** A tenant being read (a promise), or read (`{ tenant }`). */
  private readonly entries = new Map<string, Promise<string | null> | { tenant: string | null }>();
  private readonly load: (queue: string, id: string) => Promise<{ tenant: string | null } | null>;
  private readonly max: number;

  constructor(load: (queue: string, id: string) => Promise<{ tenant: string | null } | null>, max = 50_000) {
    this.load = load;
    this.max = max;
  }

  /** The tenant itself when it has been read, else a promise of it (what the event fan-out wants: no await per event). */
  readonly resolve = (queue: string, id: string): string | null | Promise<string | null> => {
    const key = `${queue}\u0000${id}`;
    const hit = this.entries.get(key);
    if (hit) return hit instanceof Promise ? hit : hit.tenant;
    if (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    const loading = this.load(queue, id).then(
      (job) => {
        // A job not found yet (an event racing its history row) is asked again next time.
        if (!job) this.entries.delete(key);
        else if (this.entries.get(key) === loading) this.entries.set(key, { tenant: job.tenant });
        return job?.tenant ?? null;
      },
      () => {
        this.entries.delete(key);
        return null;
      },
    );
    this.entries.set(key, loading);
    return loading;
  };
}
