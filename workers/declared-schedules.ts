import { ConfigError } from "../src/config.ts";
import type { DeclaredScheduler } from "../src/jobs/bullmq/index.ts";
import { schedulerOptions } from "../src/jobs/control/index.ts";
import { ValidationError } from "../src/jobs/errors.ts";
import type { Processor } from "./processor.ts";

/**
 * The schedules the definitions of this worker's processors declare, per served queue, checked like
 * an API upsert (pattern or everyMs, time zone, limit, dates, payload against the schema). Throws a
 * ConfigError naming each bad one and each id declared twice in a queue.
 */
export function declaredSchedules(processors: Processor[], queues: string[]): Map<string, DeclaredScheduler[]> {
  const problems: string[] = [];
  const byQueue = new Map<string, DeclaredScheduler[]>(queues.map((q) => [q, []]));
  for (const { definition } of processors) {
    const list = byQueue.get(definition.queue);
    if (!list) continue;
    for (const schedule of definition.schedules ?? []) {
      const where = `schedules of ${definition.queue}.${definition.name}, "${schedule.id}"`;
      if (list.some((s) => s.id === schedule.id)) {
        problems.push(`${where}: declared twice in queue "${definition.queue}"`);
        continue;
      }
      try {
        const { repeat, data } = schedulerOptions(definition, schedule);
        list.push({ id: schedule.id, name: definition.name, repeat, data });
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        problems.push(`${where}: ${err.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return byQueue;
}
