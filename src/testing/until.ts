/**
 * Polls `read` until `ok` accepts its value and returns that value; throws naming `what` and the last
 * value once `timeoutMs` has passed (with `whileChanging`, once it has passed without the value changing). The one wait-for-a-condition helper of the tests: they wait for
 * conditions, never for fixed times (the machine is shared and its speed varies).
 */
export async function until<T>(
  what: string,
  read: () => T | Promise<T>,
  ok: (value: T) => boolean = Boolean,
  options: { timeoutMs?: number; everyMs?: number; whileChanging?: boolean } = {},
): Promise<T> {
  const { timeoutMs = 45_000, everyMs = 25, whileChanging = false } = options;
  let deadline = Date.now() + timeoutMs;
  let last = await read();
  while (!ok(last)) {
    if (Date.now() > deadline)
      throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms${whileChanging ? " without change" : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
    const next = await read();
    // whileChanging: a value still moving (a backlog draining at the machine's speed) is progress;
    // the wait fails only after timeoutMs without any change.
    if (whileChanging && JSON.stringify(next) !== JSON.stringify(last)) deadline = Date.now() + timeoutMs;
    last = next;
  }
  return last;
}
