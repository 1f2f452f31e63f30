import type { JobDefinition } from "./define-job.ts";
import { demoFail } from "./definitions/demo-fail.ts";
import { demoFanout } from "./definitions/demo-fanout.ts";
import { demoNoop } from "./definitions/demo-noop.ts";
import { demoSleep } from "./definitions/demo-sleep.ts";
import { reportCsv } from "./definitions/report-csv.ts";
import { webhookDeliver } from "./definitions/webhook-deliver.ts";

/** Every job type this deployment knows, by queue and name. */
export interface JobRegistry {
  queues(): string[];
  hasQueue(queue: string): boolean;
  get(queue: string, name: string): JobDefinition | undefined;
  ofQueue(queue: string): JobDefinition[];
}

export function createRegistry(definitions: JobDefinition[]): JobRegistry {
  const byQueue = new Map<string, Map<string, JobDefinition>>();
  for (const def of definitions) {
    const names = byQueue.get(def.queue) ?? new Map<string, JobDefinition>();
    if (names.has(def.name)) throw new Error(`job type ${def.queue}.${def.name} is defined twice`);
    names.set(def.name, def);
    byQueue.set(def.queue, names);
  }
  return {
    queues: () => [...byQueue.keys()].sort(),
    hasQueue: (queue) => byQueue.has(queue),
    get: (queue, name) => byQueue.get(queue)?.get(name),
    ofQueue: (queue) => [...(byQueue.get(queue)?.values() ?? [])],
  };
}

/**
 * The definitions registered for a configuration: `webhook.deliver` and `report.csv` always (they
 * do nothing until a job is enqueued), the `demo` queue only where enabled.
 */
export function defaultDefinitions(options: { demoQueue: boolean }): JobDefinition[] {
  return [webhookDeliver, reportCsv, ...demoDefinitions(options)];
}

function demoDefinitions(options: { demoQueue: boolean }): JobDefinition[] {
  return options.demoQueue ? [demoSleep, demoFail, demoNoop, demoFanout] : [];
}
