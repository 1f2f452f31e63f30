/**
 * Polls `read` every 50 ms until `ok` accepts its value, and returns that value; throws naming `what`
 * and the last value after `timeoutMs` (a generous bound for a loaded machine, not a speed check).
 */
export async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 45_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
    last = await read();
  }
  return last;
}
