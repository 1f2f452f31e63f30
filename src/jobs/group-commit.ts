export interface GroupCommitOptions {
  /** Most items in one write. */
  maxBatch: number;
  /** Writes in flight at once. */
  concurrency: number;
  /**
   * Under sustained load, how long a batch may wait to reach `minBatch` items (0: never waits).
   * Only a batch that follows another one waits: a write after a quiet spell goes out at once.
   */
  lingerMs: number;
  minBatch: number;
}

const DEFAULTS: GroupCommitOptions = { maxBatch: 500, concurrency: 2, lingerMs: 0, minBatch: 1 };

/**
 * Group commit: writes that arrive while one is in flight go out together in the next batch, so
 * under load many rows share one round trip and one transaction commit, and at low load a write
 * goes out at once (no timer, no added latency). With `lingerMs`, a stream of writes is gathered
 * into bigger batches still (fewer statements and commits per row, for a little more delay).
 * Each caller's promise settles with its batch: resolved once its rows are committed, rejected
 * with the batch's error.
 */
export class GroupCommit<T> {
  private readonly waiting: { item: T; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private inFlight = 0;
  private readonly options: GroupCommitOptions;

  constructor(
    private readonly write: (items: T[]) => Promise<unknown>,
    options: Partial<GroupCommitOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  add(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.inFlight < this.options.concurrency) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.inFlight++;
    try {
      let streaming = false;
      while (this.waiting.length > 0) {
        if (streaming && this.options.lingerMs > 0 && this.waiting.length < this.options.minBatch) {
          await new Promise((r) => setTimeout(r, this.options.lingerMs));
        }
        const batch = this.waiting.splice(0, this.options.maxBatch);
        if (batch.length === 0) break;
        streaming = true;
        try {
          await this.write(batch.map((b) => b.item));
          for (const b of batch) b.resolve();
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.inFlight--;
    }
  }
}
