import type { Job } from "bullmq";
import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from "prom-client";

/** One job type's numbers since the last scrape (counters) or now (active), and its durations. */
interface Series {
  labels: { queue: string; name: string };
  completed: number;
  failed: number;
  retried: number;
  active: number;
  duration: Durations;
}

/** One label set's histogram: observations per bucket (not cumulative; the last is +Inf), sum and count. */
interface Durations {
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * A Prometheus histogram the hot path bumps as plain numbers, rendered by the registry like
 * prom-client's own (`<name>_bucket{le=...}`, `_sum`, `_count` per label set). prom-client's
 * `observe` validates and hashes the label set on every call (~0.5 µs, once per job); here a job
 * finds its bucket and adds to three numbers.
 */
class DurationHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly all: Durations[] = [];
  private readonly labelsOf = new Map<Durations, Record<string, string>>();

  readonly name: string;
  readonly help: string;
  private readonly bounds: number[];

  constructor(options: { name: string; help: string; buckets: number[]; registry: Registry }) {
    this.name = options.name;
    this.help = options.help;
    this.bounds = options.buckets;
    options.registry.registerMetric(this as unknown as Metric);
  }

  /** The histogram of one label set (create it once, keep it). */
  series(labels: Record<string, string>): Durations {
    const d: Durations = { buckets: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
    this.all.push(d);
    this.labelsOf.set(d, labels);
    return d;
  }

  /** Adds one observation (prom-client's buckets: the first upper bound >= value). */
  observe(d: Durations, value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > (this.bounds[i] as number)) i++;
    d.buckets[i] = (d.buckets[i] as number) + 1;
    d.sum += value;
    d.count++;
  }

  /** What the registry renders (the shape prom-client's Histogram gives it). */
  async get() {
    const values = [];
    for (const d of this.all) {
      const sharedLabels = this.labelsOf.get(d) ?? {};
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += d.buckets[i] as number;
        values.push({ metricName: `${this.name}_bucket`, labels: { le: this.bounds[i] }, sharedLabels, value: acc });
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { le: "+Inf" }, sharedLabels, value: d.count });
      values.push({ metricName: `${this.name}_sum`, labels: {}, sharedLabels, value: d.sum });
      values.push({ metricName: `${this.name}_count`, labels: {}, sharedLabels, value: d.count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    for (const d of this.all) {
      d.buckets.fill(0);
      d.sum = 0;
      d.count = 0;
    }
  }
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
  private readonly duration = new DurationHistogram({
    name: "job_processing_duration_seconds",
    help: "Time from an attempt's start to its end, per attempt",
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
    registry: this.registry,
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
   * their `collect` hooks, and the duration histogram is our own (DurationHistogram).
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
      s = { labels, completed: 0, failed: 0, retried: 0, active: 0, duration: this.duration.series(labels) };
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
    if (job.processedOn) this.duration.observe(s.duration, ((job.finishedOn ?? Date.now()) - job.processedOn) / 1000);
    return s;
  }

  /** The Prometheus text exposition. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.collect();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
