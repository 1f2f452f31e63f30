import assert from "node:assert/strict";

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

/** Items that will go out in one write, and the promise every one of their callers gets. */
class Batch<T> {
  readonly items: T[] = [];
  readonly done: Promise<void>;
  resolve!: () => void;
  reject!: (err: unknown) => void;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // A caller that dropped its promise must not turn a failed batch into an unhandled rejection:
    // the callers that kept theirs still see the error.
    this.done.catch(() => {});
  }
}

/**
 * Group commit: writes that arrive while one is in flight go out together in the next batch, so
 * under load many rows share one round trip and one transaction commit, and at low load a write
 * goes out at once (no timer, no added latency). With `lingerMs`, a stream of writes is gathered
 * into bigger batches still (fewer statements and commits per row, for a little more delay).
 * Every caller of one batch gets the same promise: resolved once its rows are committed, rejected
 * with the batch's error (one promise per batch, not per item: workers add thousands a second).
 *
 * The contract callers build on (the worker's ledger does: see `inOrder`), asserted below and by
 * test/group-commit-contract.test.ts:
 * - `add` returns the same promise object to every item of one batch, and a new one per batch;
 * - at most `concurrency` batches are being written at once; with `concurrency: 1` batches are
 *   written one at a time, in the order they were formed, so a later write of a row never
 *   overtakes an earlier one.
 */
export class GroupCommit<T> {
  /** Batches not yet written, oldest first; only the last one still takes items. */
  private readonly waiting: Batch<T>[] = [];
  private inFlight = 0;
  /** Batches whose write has started and not ended. */
  private writing = 0;
  private readonly options: GroupCommitOptions;

  private readonly write: (items: T[]) => Promise<unknown>;

  constructor(write: (items: T[]) => Promise<unknown>, options: Partial<GroupCommitOptions> = {}) {
    this.write = write;
    this.options = { ...DEFAULTS, ...options };
    assert.ok(
      Number.isInteger(this.options.concurrency) && this.options.concurrency >= 1,
      "GroupCommit: concurrency must be an integer >= 1",
    );
  }

  /** True when batches are written one at a time, in the order they were formed (`concurrency: 1`). */
  get inOrder(): boolean {
    return this.options.concurrency === 1;
  }

  add(item: T): Promise<void> {
    let batch = this.waiting[this.waiting.length - 1];
    // A batch `addAll` filled past maxBatch takes no more either.
    if (!batch || batch.items.length >= this.options.maxBatch) {
      batch = new Batch<T>();
      this.waiting.push(batch);
    }
    batch.items.push(item);
    if (this.inFlight < this.options.concurrency) void this.run();
    return batch.done;
  }

  /**
   * One caller's items, written together in one batch (one statement, one commit), as a multi-row
   * insert would: they join the batch still taking items when it has room for all of them, else
   * they form a batch of their own, which may hold more than `maxBatch` (a bulk enqueue's 1,000
   * rows are one write, not two). One promise for them all, the batch's (the contract above holds).
   */
  addAll(items: readonly T[]): Promise<void> {
    if (items.length === 0) return Promise.resolve();
    let batch = this.waiting[this.waiting.length - 1];
    if (!batch || batch.items.length + items.length > this.options.maxBatch) {
      batch = new Batch<T>();
      this.waiting.push(batch);
    }
    for (const item of items) batch.items.push(item);
    if (this.inFlight < this.options.concurrency) void this.run();
    return batch.done;
  }

  private async run(): Promise<void> {
    this.inFlight++;
    try {
      let streaming = false;
      while (this.waiting.length > 0) {
        // minBatch <= maxBatch, so a short backlog is a single batch.
        const first = this.waiting[0] as Batch<T>;
        if (streaming && this.options.lingerMs > 0 && this.waiting.length === 1 && first.items.length < this.options.minBatch) {
          await new Promise((r) => setTimeout(r, this.options.lingerMs));
        }
        const batch = this.waiting.shift();
        if (!batch) break;
        streaming = true;
        try {
          this.writing++;
          assert.ok(this.writing <= this.options.concurrency, "GroupCommit: more batches written at once than its concurrency");
          await this.write(batch.items);
          batch.resolve();
        } catch (err) {
          batch.reject(err);
        } finally {
          this.writing--;
        }
      }
    } finally {
      this.inFlight--;
    }
  }
}
