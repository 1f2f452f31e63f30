/**
 * Jobs' tenants, read once per API instance: a tenant-bound subscriber of `queueEvents` needs the
 * tenant of each event's job, and most events (ADDED, ACTIVE, PROGRESS) don't carry the job. One
 * read per job per instance, shared by every subscriber; a job's tenant never changes. Bounded: the
 * oldest entries go first.
 */
export class TenantCache {
  private readonly entries = new Map<string, Promise<string | null>>();
  private readonly load: (queue: string, id: string) => Promise<{ tenant: string | null } | null>;
  private readonly max: number;

  constructor(load: (queue: string, id: string) => Promise<{ tenant: string | null } | null>, max = 50_000) {
    this.load = load;
    this.max = max;
  }

  readonly tenantOf = (queue: string, id: string): Promise<string | null> => {
    const key = `${queue}\u0000${id}`;
    const hit = this.entries.get(key);
    if (hit) return hit;
    if (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    const loading = this.load(queue, id).then(
      (job) => {
        // A job not found yet (an event racing its history row) is asked again next time.
        if (!job) this.entries.delete(key);
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
