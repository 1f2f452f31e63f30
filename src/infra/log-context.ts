import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Fields every log line written while handling one request or one job carries (`requestId`, or
 * `queue` and `jobId`), without passing a logger down: the logger reads them from here.
 */
export const logContext = new AsyncLocalStorage<Record<string, unknown>>();

/** Runs `fn` with `fields` added to every log line it (and what it awaits) writes. */
export function withLogContext<T>(fields: Record<string, unknown>, fn: () => T): T {
  const outer = logContext.getStore();
  return logContext.run(outer ? { ...outer, ...fields } : fields, fn);
}
