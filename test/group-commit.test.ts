import { describe, expect, it } from "vitest";
import { GroupCommit } from "../src/jobs/history/index.ts";

// The batching behind history writes, on its own: what goes out together, and what each caller learns.

function recorder(fail?: (items: number[]) => boolean) {
  const batches: number[][] = [];
  const write = async (items: number[]) => {
    batches.push(items);
    await new Promise((r) => setTimeout(r, 5));
    if (fail?.(items)) throw new Error(`batch ${items.join(",")} failed`);
  };
  return { batches, write };
}

describe("GroupCommit", () => {
  it("sends a lone write at once, and what arrives while it is in flight as one batch", async () => {
    const { batches, write } = recorder();
    const gc = new GroupCommit(write, { concurrency: 1 });
    const first = gc.add(0);
    const rest = [1, 2, 3].map((i) => gc.add(i));
    await Promise.all([first, ...rest]);
    expect(batches).toEqual([[0], [1, 2, 3]]);
  });

  it("with a linger, a stream of writes goes out in batches of at least minBatch", async () => {
    const { batches, write } = recorder();
    const gc = new GroupCommit(write, { concurrency: 1, lingerMs: 20, minBatch: 10 });
    const all: Promise<void>[] = [gc.add(0)];
    for (let i = 1; i <= 30; i++) {
      all.push(gc.add(i));
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(all);
    expect(batches[0]).toEqual([0]);
    expect(batches.flat()).toEqual(Array.from({ length: 31 }, (_, i) => i));
    // Without the linger each batch would hold what arrived during one 5 ms write (a handful).
    expect(batches.length).toBeLessThan(8);
  });

  it("never puts more than maxBatch items in one write", async () => {
    const { batches, write } = recorder();
    const gc = new GroupCommit(write, { concurrency: 1, maxBatch: 4 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => gc.add(i)));
    expect(batches.map((b) => b.length)).toEqual([1, 4, 4, 1]);
  });

  it("rejects exactly the callers of a failed batch, with its error, and carries on", async () => {
    const { write } = recorder((items) => items.includes(2));
    const gc = new GroupCommit(write, { concurrency: 1, maxBatch: 2 });
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => gc.add(i)));
    // Batches: [0], [1, 2], [3, 4].
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled", "fulfilled"]);
    expect((results[2] as PromiseRejectedResult).reason.message).toBe("batch 1,2 failed");
  });
});
