/**
 * A task run on a timer: first after `firstDelayMs` (default: at once), then `intervalMs` after each
 * run ends, never two runs at once. A run that throws is handed to `onError` and the loop goes on.
 * `stop` ends the loop and waits for a run under way. The one timer loop of the event relay, the
 * ledger reconciler and history retention.
 */
export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  private readonly task: () => Promise<unknown>;
  private readonly options: PeriodicOptions;

  constructor(task: () => Promise<unknown>, options: PeriodicOptions) {
    this.task = task;
    this.options = options;
  }

  start(): void {
    this.stopped = false;
    this.schedule(this.options.firstDelayMs ?? 0);
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => this.run(), delayMs);
    if (this.options.unref) this.timer.unref();
  }

  private run(): void {
    if (this.stopped) return;
    this.running = this.task()
      .then(
        () => undefined,
        (err: unknown) => this.options.onError?.(err),
      )
      .finally(() => {
        this.running = undefined;
        if (!this.stopped) this.schedule(this.options.intervalMs);
      });
  }

  /** Ends the loop; resolves once a run under way has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}

export interface PeriodicOptions {
  /** Time from the end of one run to the start of the next. */
  intervalMs: number;
  /** Time from `start` to the first run (default 0). */
  firstDelayMs?: number;
  /** Don't keep the process alive for this timer. */
  unref?: boolean;
  /** Called with what a run threw (the loop goes on). */
  onError?: (err: unknown) => void;
}
