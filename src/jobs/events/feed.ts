import { channels, type KeySpace } from "../bullmq/keys.ts";
import { NotFoundError, SlowSubscriberError, ValidationError } from "../errors.ts";
import { type JobView, TERMINAL_STATES } from "../job-view.ts";
import type { ChannelListener, EventChannels } from "./channels.ts";
import {
  compareEventIds,
  type EventStream,
  isValidEventId,
  type JobEvent,
  type JobEventType,
  type LoadJob,
  TERMINAL_EVENTS,
  translate,
} from "./job-event.ts";

export interface EventFeedOptions {
  /** The process's shared channel subscriptions (pub/sub, and this process's relay). */
  channels: EventChannels;
  stream: EventStream;
  /** Where the channels live (QUEUE_PREFIX and REDIS_KEY_LAYOUT). */
  space: KeySpace;
  loadJob: LoadJob;
  hasQueue: (queue: string) => boolean;
  /** Events held for a subscriber that is not reading; past it the subscription ends with an error. */
  maxBuffer: number;
  /** Jobs' tenants (cached), for a tenant-bound queue subscription's replay; live events are filtered by `channels`. */
  tenantOf?: (queue: string, jobId: string) => string | null | Promise<string | null>;
}

/**
 * The events of one subscription: first the events known at start (a SNAPSHOT, or the history after
 * `since`), then live ones from pub/sub. Live events whose id is not past the last one delivered are
 * dropped, which removes the overlap between the two parts and any event relayed twice.
 */
class Feed implements AsyncIterableIterator<JobEvent>, ChannelListener {
  private readonly initial: JobEvent[] = [];
  private live: JobEvent[] = [];
  private wake: (() => void) | null = null;
  private done = false;
  private failure: Error | null = null;
  private unsubscribe: (() => void) | null = null;
  /** The newest id pushed so far, from any source. */
  private lastPushed: string | null = null;
  /** Set once nothing more is to be delivered, buffered events included. */
  private ended = false;

  private last: string;
  private readonly completesOnTerminal: boolean;
  private readonly maxBuffer: number;
  private readonly types: ReadonlySet<JobEventType> | null;
  /** Set: only this tenant's jobs' events reach the feed (the channel filters them, see `EventChannels`). */
  readonly tenant: string | null;

  constructor(
    last: string,
    completesOnTerminal: boolean,
    maxBuffer: number,
    types: ReadonlySet<JobEventType> | null,
    tenant: string | null = null,
  ) {
    this.last = last;
    this.completesOnTerminal = completesOnTerminal;
    this.maxBuffer = maxBuffer;
    this.types = types;
    this.tenant = tenant;
  }

  attach(unsubscribe: () => void): void {
    if (this.done) unsubscribe();
    else this.unsubscribe = unsubscribe;
  }

  setStart(initial: JobEvent[], last: string): void {
    this.initial.push(...initial);
    this.last = last;
  }

  push(event: JobEvent): void {
    if (this.done) return;
    // Each source delivers in order; a copy of an event already taken (pub/sub after the local
    // relay, or a relay that took over) is dropped here rather than buffered.
    if (this.lastPushed !== null && compareEventIds(event.id, this.lastPushed) <= 0) return;
    this.lastPushed = event.id;
    if (this.live.length >= this.maxBuffer) this.coalesce();
    if (this.live.length >= this.maxBuffer) {
      this.failure = new SlowSubscriberError(this.maxBuffer);
      this.close();
      return;
    }
    this.live.push(event);
    this.wake?.();
  }

  /**
   * For a reader that fell behind: of each job's waiting PROGRESS events only the newest stays
   * (latest wins). Every other event, terminal ones above all, is kept.
   */
  private coalesce(): void {
    const newest = new Map<string, JobEvent>();
    for (const e of this.live) if (e.type === "PROGRESS") newest.set(e.jobId, e);
    this.live = this.live.filter((e) => e.type !== "PROGRESS" || newest.get(e.jobId) === e);
  }

  private close(): void {
    this.done = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.wake?.();
  }

  /** Delivers `event`; after a terminal event of a job feed, the next call ends the stream. */
  private deliver(event: JobEvent): IteratorResult<JobEvent> {
    if (this.completesOnTerminal && TERMINAL_EVENTS.has(event.type)) {
      this.close();
      this.ended = true;
    }
    return { value: event, done: false };
  }

  async next(): Promise<IteratorResult<JobEvent>> {
    for (;;) {
      if (this.ended) return { value: undefined, done: true };
      const first = this.initial.shift();
      if (first) {
        if (this.types && !this.types.has(first.type)) continue;
        return this.deliver(first);
      }
      const event = this.live.shift();
      if (event) {
        if (compareEventIds(event.id, this.last) <= 0) continue;
        this.last = event.id;
        if (this.types && !this.types.has(event.type)) continue;
        return this.deliver(event);
      }
      if (this.failure) {
        const failure = this.failure;
        this.failure = null;
        this.ended = true;
        throw failure;
      }
      if (this.done) return { value: undefined, done: true };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
  }

  async return(): Promise<IteratorResult<JobEvent>> {
    this.close();
    this.ended = true;
    return { value: undefined, done: true };
  }

  async throw(err: unknown): Promise<IteratorResult<JobEvent>> {
    this.close();
    throw err;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<JobEvent> {
    return this;
  }
}

/** Opens subscriptions to job and queue events; see the API contract's `Subscription` type. */
export class EventFeeds {
  private readonly options: EventFeedOptions;

  constructor(options: EventFeedOptions) {
    this.options = options;
  }

  private snapshot(position: string, job: JobView, resync: boolean): JobEvent {
    return {
      id: position,
      type: "SNAPSHOT",
      queue: job.queue,
      jobId: job.id,
      at: new Date(),
      progress: job.progress,
      failedReason: job.failedReason,
      job,
      resync,
    };
  }

  private checkSince(since: string | null | undefined): void {
    if (since != null && !isValidEventId(since)) {
      throw ValidationError.at(["since"], `"${since}" is not an event id (expected <ms>-<seq>, e.g. 1700000000000-0)`);
    }
  }

  /** Joins `channel` and resolves once Redis confirmed it, so nothing published after is missed. */
  private async subscribe(feed: Feed, channel: string): Promise<void> {
    feed.attach(await this.options.channels.join(channel, feed));
  }

  /**
   * Events of one job. Without `since`: a SNAPSHOT first (its id is the stream position it was taken
   * at), then live events. With `since`: the job's events after it, then live ones; when `since` is
   * older than the stream still holds, a SNAPSHOT with `resync` instead. Ends after a terminal event.
   * Throws NotFoundError for an unknown queue or job, ValidationError for a malformed `since`.
   */
  async job(queue: string, jobId: string, since?: string | null): Promise<AsyncIterableIterator<JobEvent>> {
    const { stream, loadJob, space } = this.options;
    if (!this.options.hasQueue(queue)) throw new NotFoundError(`No queue named "${queue}"`);
    this.checkSince(since);
    const feed = new Feed("0-0", true, this.options.maxBuffer, null);
    await this.subscribe(feed, channels.job(space, queue, jobId));
    try {
      const { position, job } = await this.consistentSnapshot(queue, jobId);
      if (!job) throw new NotFoundError(`No job "${jobId}" in queue "${queue}"`);
      if (since == null || (await this.isTrimmed(queue, since))) {
        const snapshot = this.snapshot(position, job, since != null);
        if (TERMINAL_STATES.has(job.state)) {
          // A finished job: its SNAPSHOT, then the stream completes.
          await feed.return();
          return once(snapshot);
        }
        feed.setStart([snapshot], position);
      } else {
        const missed: JobEvent[] = [];
        for await (const raw of stream.after(queue, since, position)) {
          if (raw.args.jobId !== jobId) continue;
          const event = await translate(queue, raw.id, raw.name, raw.args, loadJob);
          if (event) missed.push(event);
        }
        if (TERMINAL_STATES.has(job.state) && !missed.some((e) => TERMINAL_EVENTS.has(e.type))) {
          // The job ended at or before `since`: the client has seen its end already.
          await feed.return();
          return none();
        }
        feed.setStart(missed, position);
      }
      return feed;
    } catch (err) {
      await feed.return();
      throw err;
    }
  }

  /**
   * Every event of a queue (optionally of some types only), resumable with `since` the same way.
   * With `tenant`: only the events of that tenant's jobs, filtered where they fan out (one Redis
   * subscription per queue and instance, whatever the tenants), replayed ones included.
   */
  async queue(
    queue: string,
    since?: string | null,
    types?: JobEventType[] | null,
    tenant: string | null = null,
  ): Promise<AsyncIterableIterator<JobEvent>> {
    const { stream, loadJob, space, tenantOf } = this.options;
    if (!this.options.hasQueue(queue)) throw new NotFoundError(`No queue named "${queue}"`);
    this.checkSince(since);
    const feed = new Feed("0-0", false, this.options.maxBuffer, types && types.length > 0 ? new Set(types) : null, tenant);
    await this.subscribe(feed, channels.queue(space, queue));
    try {
      const position = await stream.tail(queue);
      const missed: JobEvent[] = [];
      if (since != null && !(await this.isTrimmed(queue, since))) {
        for await (const raw of stream.after(queue, since, position)) {
          const event = await translate(queue, raw.id, raw.name, raw.args, loadJob);
          if (!event) continue;
          if (tenant !== null) {
            const owner = event.job ? event.job.tenant : tenantOf ? await tenantOf(queue, event.jobId) : undefined;
            if (owner !== tenant) continue;
          }
          missed.push(event);
        }
      }
      feed.setStart(missed, position);
      return feed;
    } catch (err) {
      await feed.return();
      throw err;
    }
  }

  /**
   * The job and the stream position it is current at. The two can't be read atomically, so read the
   * tail, the job, the tail again, and accept when none of the job's own events came in between
   * (then the job is as of the second read). Without this a SNAPSHOT could already show what an
   * event after its position says, and a client resuming from it would see that event twice.
   */
  private async consistentSnapshot(queue: string, jobId: string): Promise<{ position: string; job: JobView | null }> {
    const { stream, loadJob } = this.options;
    let before = await stream.tail(queue);
    for (let attempt = 0; ; attempt++) {
      const job = await loadJob(queue, jobId);
      const after = await stream.tail(queue);
      if (after === before || attempt === 4) return { position: before, job };
      let touched = false;
      for await (const raw of stream.after(queue, before, after)) if (raw.args.jobId === jobId) touched = true;
      if (!touched) return { position: after, job };
      before = after;
    }
  }

  /** True when events after `since` may have been trimmed from the stream. */
  private isTrimmed(queue: string, since: string): Promise<boolean> {
    return this.options.stream.isTrimmedAfter(queue, since);
  }
}

async function* once(event: JobEvent): AsyncGenerator<JobEvent> {
  yield event;
}

/** An empty stream, for a subscription with nothing left to say. */
async function* none(): AsyncGenerator<JobEvent> {}
