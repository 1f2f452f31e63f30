import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.ts";
import { configProblems } from "../src/testing/config.ts";

// Durable enqueue's variables (ENQUEUE_ACK, RECOVERY_*): defaults, and one clear line for each bad value.
describe("durable enqueue config", () => {
  it("has durable defaults", () => {
    expect(loadConfig({})).toMatchObject({
      enqueueAck: "record",
      recovery: { intervalMs: 300_000, watchMs: 1_000, graceMs: 10_000, leaseMs: 30_000 },
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
});
