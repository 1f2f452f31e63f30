import type { Logger } from "../src/infra/logger.ts";
import type { Db } from "../src/infra/prisma.ts";
import { foldJobStats } from "../src/jobs/history/index.ts";

/**
 * Folds the jobStats contributions the history writes appended into the rollups at start (what the
 * last processes left) and then every `intervalMs`, so a jobStats query rarely has much to fold
 * itself. Any number of workers may run it (folds take disjoint rows); a failure (PostgreSQL down) is
 * retried at the next tick.
 */
export function startStatsFolder(db: Db, log: Logger, intervalMs = 5_000): { stop(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve();
  const fold = () => {
    running = running.then(() =>
      foldJobStats(db).catch((err: unknown) =>
        log.debug("folding job stats failed; next tick retries", { err: err instanceof Error ? err.message : String(err) }),
      ),
    );
  };
  fold();
  const timer = setInterval(fold, intervalMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
