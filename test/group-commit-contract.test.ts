import { describe, expect, it } from "vitest";
import { createLogger } from "../src/infra/logger.ts";
import { createPrisma } from "../src/infra/prisma.ts";
import { keySpace } from "../src/jobs/bullmq/index.ts";
import { GroupCommit, HistoryStore } from "../src/jobs/history/index.ts";
import { adminDatabaseUrl } from "../src/testing/database.ts";
import { Ledger } from "../workers/ledger.ts";

// The contract the worker's write path is correct by (src/jobs/history/group-commit.ts): one shared
// promise per batch, and batches never written at once beyond `concurrency` (one at a time, in order,
// with concurrency 1). These fail if either changes.

/** A write that records how many writes overlap and the order batches were written in. */
function probe() {
  let running = 0;
  const seen = { maxRunning: 0, batches: [] as number[][] };
  const write = async (items: number[]) => {
    running++;
    seen.maxRunning = Math.max(seen.maxRunning, running);
    seen.batches.push(items);
    await new Promise((r) => setTimeout(r, 2));
    running--;
  };
  return { seen, write };
}

describe("GroupCommit's contract", () => {
  it("gives every item of one batch the same promise, and each batch its own", async () => {
    const { seen, write } = probe();
    const gc = new GroupCommit(write, { concurrency: 1, maxBatch: 3 });
    const promises = Array.from({ length: 7 }, (_, i) => gc.add(i));
    // [0] goes out at once; then [1, 2, 3], [4, 5, 6].
    expect(promises[1]).toBe(promises[2]);
    expect(promises[2]).toBe(promises[3]);
    expect(promises[4]).toBe(promises[6]);
    expect(new Set(promises).size).toBe(3);
    await Promise.all(promises);
    expect(seen.batches).toEqual([[0], [1, 2, 3], [4, 5, 6]]);
  });

  it("with concurrency 1 never writes two batches at once, and writes them in the order they were formed", async () => {
    const { seen, write } = probe();
    const gc = new GroupCommit(write, { concurrency: 1, maxBatch: 5 });
    expect(gc.inOrder).toBe(true);
    const all: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      all.push(gc.add(i));
      if (i % 17 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(all);
    expect(seen.maxRunning).toBe(1);
    expect(seen.batches.flat()).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it("never writes more batches at once than its concurrency", async () => {
    const { seen, write } = probe();
    const gc = new GroupCommit(write, { concurrency: 3, maxBatch: 2 });
    expect(gc.inOrder).toBe(false);
    await Promise.all(Array.from({ length: 100 }, (_, i) => gc.add(i)));
    expect(seen.maxRunning).toBeLessThanOrEqual(3);
    expect(seen.maxRunning).toBeGreaterThan(1);
  });

  it("addAll writes one caller's items in one batch, past maxBatch if need be, and joins a batch only with room for all", async () => {
    const { seen, write } = probe();
    const gc = new GroupCommit(write, { concurrency: 1, maxBatch: 3 });
    const first = gc.add(0); // goes out at once
    const small = gc.addAll([1, 2]); // a new batch, still taking items
    const joined = gc.add(3); // joins it: [1, 2, 3] is full
    const big = gc.addAll([4, 5, 6, 7, 8]); // more than maxBatch: a batch of its own, not split
    const after = gc.add(9); // the big batch takes no more
    const fits = gc.addAll([10, 11]); // joins [9]: room for both
    const noRoom = gc.addAll([12, 13]); // [9, 10, 11] is full: a batch of its own
    expect(small).toBe(joined);
    expect(after).toBe(fits);
    expect(new Set([first, small, big, after, noRoom]).size).toBe(5);
    await expect(gc.addAll([])).resolves.toBeUndefined();
    await Promise.all([first, small, big, after, noRoom]);
    expect(seen.batches).toEqual([[0], [1, 2, 3], [4, 5, 6, 7, 8], [9, 10, 11], [12, 13]]);
    expect(seen.maxRunning).toBe(1);
  });

  it("refuses a concurrency below one", () => {
    expect(() => new GroupCommit(async () => {}, { concurrency: 0 })).toThrow(/concurrency/);
    expect(() => new GroupCommit(async () => {}, { concurrency: 1.5 })).toThrow(/concurrency/);
  });

  it("the ledger's per-batch path refuses a history store that may write batches at once", async () => {
    const db = createPrisma(adminDatabaseUrl, { max: 1 });
    try {
      const log = createLogger("silent");
      const unordered = new Ledger(null as never, keySpace("{x}"), new HistoryStore(db, { concurrency: 2 }), db, log);
      expect(() => unordered.submit({ view: {} as never, audit: null })).toThrow(/in order/);
      expect(new HistoryStore(db, { concurrency: 1 }).upsertsInOrder).toBe(true);
    } finally {
      await db.$disconnect();
    }
  });
});
