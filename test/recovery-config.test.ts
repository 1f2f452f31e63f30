import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { configProblems } from "../src/testing/config.ts";

// Durable enqueue's variables (ENQUEUE_ACK, RECOVERY_*): defaults, and one clear line for each bad value.
describe("durable enqueue config", () => {
  it("has durable defaults", () => {
    expect(loadConfig({})).toMatchObject({
      enqueueAck: "record",
      recovery: { intervalMs: 300_000, watchMs: 1_000, graceMs: 10_000, leaseMs: 30_000, pageSize: 200, rowsPerSecond: 4_000 },
    });
    expect(loadConfig({ ENQUEUE_ACK: "redis", RECOVERY_INTERVAL_MS: "0" })).toMatchObject({
      enqueueAck: "redis",
      recovery: { intervalMs: 0 },
    });
  });

  it("names each bad value", () => {
    expect(
      configProblems({
        ENQUEUE_ACK: "fsync",
        RECOVERY_INTERVAL_MS: "-5",
        RECOVERY_WATCH_MS: "0",
        RECOVERY_GRACE_MS: "1e999",
        RECOVERY_LEASE_MS: "x".repeat(10_000),
      }),
    ).toEqual([
      'ENQUEUE_ACK: ENQUEUE_ACK must be record or redis (got "fsync")',
      'RECOVERY_INTERVAL_MS: RECOVERY_INTERVAL_MS must be an integer >= 0 (got "-5")',
      'RECOVERY_WATCH_MS: RECOVERY_WATCH_MS must be a positive integer (got "0")',
      'RECOVERY_GRACE_MS: RECOVERY_GRACE_MS must be a positive integer (got "1e999")',
      expect.stringMatching(/^RECOVERY_LEASE_MS: RECOVERY_LEASE_MS must be a positive integer/),
    ]);
  });

  it("refuses intervals a Node timer cannot hold (a longer one would fire every millisecond)", () => {
    expect(configProblems({ RECOVERY_INTERVAL_MS: "99999999999", RECOVERY_GRACE_MS: "2147483648" })).toEqual([
      'RECOVERY_INTERVAL_MS: RECOVERY_INTERVAL_MS must be at most 2147483647 (a Node timer\'s limit) (got "99999999999")',
      'RECOVERY_GRACE_MS: RECOVERY_GRACE_MS must be at most 2147483647 (a Node timer\'s limit) (got "2147483648")',
    ]);
    expect(loadConfig({ RECOVERY_LEASE_MS: "2147483647" }).recovery.leaseMs).toBe(2_147_483_647);
  });

  it("takes a pace (rows per step and per second; 0 per second is no limit) and refuses hostile ones", () => {
    expect(loadConfig({ RECOVERY_PAGE_SIZE: "50", RECOVERY_ROWS_PER_SECOND: "0" }).recovery).toMatchObject({
      pageSize: 50,
      rowsPerSecond: 0,
    });
    expect(loadConfig({ RECOVERY_PAGE_SIZE: "10000", RECOVERY_ROWS_PER_SECOND: "1000000" }).recovery).toMatchObject({
      pageSize: 10_000,
      rowsPerSecond: 1_000_000,
    });
    expect(configProblems({ RECOVERY_PAGE_SIZE: "0", RECOVERY_ROWS_PER_SECOND: "-1" })).toEqual([
      'RECOVERY_PAGE_SIZE: RECOVERY_PAGE_SIZE must be a positive integer (got "0")',
      'RECOVERY_ROWS_PER_SECOND: RECOVERY_ROWS_PER_SECOND must be an integer >= 0 (got "-1")',
    ]);
    expect(configProblems({ RECOVERY_PAGE_SIZE: "10001", RECOVERY_ROWS_PER_SECOND: "1e999" })).toEqual([
      'RECOVERY_PAGE_SIZE: RECOVERY_PAGE_SIZE must be at most 10000 (got "10001")',
      'RECOVERY_ROWS_PER_SECOND: RECOVERY_ROWS_PER_SECOND must be an integer >= 0 (got "1e999")',
    ]);
    expect(configProblems({ RECOVERY_PAGE_SIZE: "2.5", RECOVERY_ROWS_PER_SECOND: "fast" })).toEqual([
      'RECOVERY_PAGE_SIZE: RECOVERY_PAGE_SIZE must be a positive integer (got "2.5")',
      'RECOVERY_ROWS_PER_SECOND: RECOVERY_ROWS_PER_SECOND must be an integer >= 0 (got "fast")',
    ]);
    expect(configProblems({ RECOVERY_PAGE_SIZE: "9".repeat(10_000) })).toEqual([
      expect.stringMatching(/^RECOVERY_PAGE_SIZE: RECOVERY_PAGE_SIZE must be/),
    ]);
  });
});
