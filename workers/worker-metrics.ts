import type { Job } from "bullmq";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

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
  private readonly active = new Gauge({
    name: "jobs_active",
    help: "Jobs this worker is running now",
    labelNames: ["queue"],
    registers: [this.registry],
  });

  /** `backlog(queue)` is read at each scrape; a Redis error leaves the gauge out of that scrape. */
  constructor(queues: string[], backlog: (queue: string) => Promise<number>) {
    collectDefaultMetrics({ register: this.registry });
    for (const queue of queues) this.active.set({ queue }, 0);
    new Gauge({
      name: "ledger_backlog",
      help: "Finished jobs whose history / audit rows wait in Redis for PostgreSQL",
      labelNames: ["queue"],
      registers: [this.registry],
      async collect() {
        for (const queue of queues) {
          try {
            this.set({ queue }, await backlog(queue));
          } catch {
            // Redis is down: no value beats a stale one.
          }
        }
      },
    });
  }

  /**
   * The labelled series of one job type, looked up once: prom-client hashes the label object on
   * every call otherwise, several times per job.
   */
  private series(job: Job) {
    const key = `${job.queueName}\u0000${job.name}`;
    let s = this.byType.get(key);
    if (!s) {
      const labels = { queue: job.queueName, name: job.name };
      s = {
        completed: this.completed.labels(labels),
        failed: this.failed.labels(labels),
        retried: this.retried.labels(labels),
        duration: this.duration.labels(labels),
        active: this.active.labels({ queue: job.queueName }),
      };
      this.byType.set(key, s);
    }
    return s;
  }
  private readonly byType = new Map<
    string,
    {
      completed: Counter.Internal;
      failed: Counter.Internal;
      retried: Counter.Internal;
      duration: Histogram.Internal<"queue" | "name">;
      active: Gauge.Internal<"queue">;
    }
  >();

  onActive(job: Job): void {
    this.series(job).active.inc();
  }

  onCompleted(job: Job): void {
    this.ended(job).completed.inc();
  }

  /** `final`: no attempt left (or cancelled); otherwise the job will be retried. */
  onFailed(job: Job, final: boolean): void {
    const s = this.ended(job);
    (final ? s.failed : s.retried).inc();
  }

  private ended(job: Job) {
    const s = this.series(job);
    s.active.dec();
    if (job.processedOn) s.duration.observe(((job.finishedOn ?? Date.now()) - job.processedOn) / 1000);
    return s;
  }

  /** The Prometheus text exposition. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
