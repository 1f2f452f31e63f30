/**
 * Group commit: writes that arrive while one is in flight go out together in the next batch, so
 * under load many rows share one round trip and one transaction commit, and at low load a write
 * goes out at once (no timer, no added latency). Each caller's promise settles with its batch:
 * resolved once its rows are committed, rejected with the batch's error.
 */
export class GroupCommit<T> {
  private readonly waiting: { item: T; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private inFlight = 0;

  constructor(
    private readonly write: (items: T[]) => Promise<unknown>,
    private readonly options: { maxBatch: number; concurrency: number } = { maxBatch: 500, concurrency: 2 },
  ) {}

  add(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.inFlight < this.options.concurrency) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.inFlight++;
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.splice(0, this.options.maxBatch);
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
