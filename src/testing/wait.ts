/**
 * Polls `probe` every 50 ms until `ok` accepts its value, and returns that value; throws naming `what`
 * and the last value after `tries` rounds. Tests wait for conditions this way, never for fixed times.
 */
export async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, tries = 600): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < tries; i++) {
    last = await probe();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: still ${JSON.stringify(last)}`);
}
