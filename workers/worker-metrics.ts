import type { Job } from "bullmq";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** One job type's numbers since the last scrape (counters) or now (active). */
interface Series {
  labels: { queue: string; name: string };
  completed: number;
  failed: number;
  retried: number;
  active: number;
  duration: Histogram.Internal<"queue" | "name">;
}

/**
 * The worker's Prometheus metrics (served on `/metrics` at WORKER_PORT): jobs completed, failed for
 * good and retried by queue and name, how long attempts took, jobs running now, the ledger backlog
 * (records waiting in Redis for PostgreSQL) and Node's default process metrics, event-loop lag
 * included. Each instance has its own registry, so tests can build several in one process.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly completed = new Counter({
    name: "jobs_completed_total",
    help: "Jobs this worker completed",
    labelNames: ["queue", "name"],
    registers: [this.registry],
  });
  private readonly failed = new Counter({
    name: "jobs_failed_total",
    help: "Jobs that failed for good in this worker (cancelled ones included)",
    labelNames: ["queue", "name"],
    registers: [this.registry],
  });
  private readonly retried = new Counter({
    name: "jobs_retried_total",
    help: "Failed attempts that will be retried",
    labelNames: ["queue", "name"],
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: "job_processing_duration_seconds",
    help: "Time from an attempt's start to its end, per attempt",
    labelNames: ["queue", "name"],
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  private readonly stalled = new Counter({
    name: "jobs_stalled_total",
    help: "Jobs this worker's stalled check found with an expired lock (their worker died or froze) and moved back to wait",
    labelNames: ["queue"],
    registers: [this.registry],
  });
  private readonly active = new Gauge({
    name: "jobs_active",
    help: "Jobs this worker is running now",
    labelNames: ["queue"],
    registers: [this.registry],
  });

  /** `backlog(queue)` is read at each scrape; a Redis error leaves the gauge out of that scrape. */
  constructor(
    queues: string[],
    backlog: (queue: string) => Promise<number>,
    quarantined: (queue: string) => Promise<number> = async () => 0,
  ) {
    collectDefaultMetrics({ register: this.registry });
    for (const queue of queues) {
      this.active.set({ queue }, 0);
      this.stalled.inc({ queue }, 0);
    }
    this.perQueueGauge(queues, "ledger_backlog", "Finished jobs whose history / audit rows wait in Redis for PostgreSQL", backlog);
    this.perQueueGauge(
      queues,
      "history_quarantined",
      "History, audit and ledger rows PostgreSQL refused for their data, kept in the quarantine (alert: HistoryRowsQuarantined)",
      quarantined,
    );
  }

  /** A gauge per queue read at each scrape; a Redis error leaves the queue out of that scrape. */
  private perQueueGauge(queues: string[], name: string, help: string, read: (queue: string) => Promise<number>): void {
    new Gauge({
      name,
      help,
      labelNames: ["queue"],
      registers: [this.registry],
      async collect() {
        for (const queue of queues) {
          try {
            this.set({ queue }, await read(queue));
          } catch {
            // Redis is down: no value beats a stale one.
          }
        }
      },
    });
  }

  /**
   * Per job type, plain numbers the hot path bumps: prom-client hashes the label set on every call
   * (four times per job), so the counters and the active gauge are handed to it at scrape time, in
   * their `collect` hooks. Only the duration histogram is observed per job.
   */
  private series(job: Job): Series {
    // By queue, then name: two lookups on the job's own strings, no key built per job.
    let byName = this.byQueue.get(job.queueName);
    if (!byName) {
      byName = new Map();
      this.byQueue.set(job.queueName, byName);
    }
    let s = byName.get(job.name);
    if (!s) {
      const labels = { queue: job.queueName, name: job.name };
      s = { labels, completed: 0, failed: 0, retried: 0, active: 0, duration: this.duration.labels(labels) };
      byName.set(job.name, s);
      this.byType.push(s);
    }
    return s;
  }
  private readonly byQueue = new Map<string, Map<string, Series>>();
  private readonly byType: Series[] = [];

  /** Adds what the series counted since the last scrape to the prom-client counters, and sets the gauge. */
  private collect(): void {
    const activeByQueue = new Map<string, number>();
    for (const s of this.byType) {
      if (s.completed) this.completed.inc(s.labels, s.completed);
      if (s.failed) this.failed.inc(s.labels, s.failed);
      if (s.retried) this.retried.inc(s.labels, s.retried);
      s.completed = s.failed = s.retried = 0;
      activeByQueue.set(s.labels.queue, (activeByQueue.get(s.labels.queue) ?? 0) + s.active);
    }
    for (const [queue, n] of activeByQueue) this.active.set({ queue }, n);
  }

  onStalled(queue: string): void {
    this.stalled.inc({ queue });
  }

  onActive(job: Job): void {
    this.series(job).active++;
  }

  onCompleted(job: Job): void {
    this.ended(job).completed++;
  }

  /** `final`: no attempt left (or cancelled); otherwise the job will be retried. */
  onFailed(job: Job, final: boolean): void {
    const s = this.ended(job);
    if (final) s.failed++;
    else s.retried++;
  }

  private ended(job: Job): Series {
    const s = this.series(job);
    s.active--;
    if (job.processedOn) s.duration.observe(((job.finishedOn ?? Date.now()) - job.processedOn) / 1000);
    return s;
  }

  /** The Prometheus text exposition. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.collect();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
