/**
 * Polls `read` until `ok` accepts its value and returns that value; throws naming `what` and the last
 * value once `timeoutMs` has passed. The one wait-for-a-condition helper of the tests: they wait for
 * conditions, never for fixed times (the machine is shared and its speed varies).
 */
export async function until<T>(
  what: string,
  read: () => T | Promise<T>,
  ok: (value: T) => boolean = Boolean,
  options: { timeoutMs?: number; everyMs?: number } = {},
): Promise<T> {
  const { timeoutMs = 45_000, everyMs = 25 } = options;
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
    last = await read();
  }
  return last;
}
