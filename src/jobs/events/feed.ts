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

/** Who reads a `PullStream` without awaiting it (websocket.ts): told when `take` has something new. */
export interface StreamConsumer {
  ready(): void;
}

/**
 * A stream read without a promise per read: `take` answers the next result when one is ready, else
 * null, and the consumer set with `consume` is called once one is (or the stream ends). What a
 * WebSocket subscription reads its feed through, so an idle subscription holds no pending promise,
 * suspended function or closure.
 */
export interface PullStream<T> {
  take(): IteratorResult<T> | null;
  consume(consumer: StreamConsumer | null): void;
  return(): Promise<IteratorResult<T>>;
}

export function isPullStream<T>(value: unknown): value is PullStream<T> & AsyncIterator<T> {
  return typeof value === "object" && value !== null && typeof (value as Partial<PullStream<T>>).take === "function";
}

const DONE: IteratorResult<never> = Object.freeze({ value: undefined, done: true }) as IteratorResult<never>;

/**
 * The events of one subscription: first the events known at start (a SNAPSHOT, or the history after
 * `since`), then live ones from pub/sub. Live events whose id is not past the last one delivered are
 * dropped, which removes the overlap between the two parts and any event relayed twice.
 *
 * Read as an async iterator (SSE, tests) or as a `PullStream` (WebSocket). A server holds one per
 * subscription, tens of thousands of them: the queues are allocated only while events wait, and
 * the feed leaves its channel by name (no closure kept for it).
 */
// Also an `EndableStream` (src/access/live-sessions.ts: `endWith`, `notifyEnd`), so revocation tracks it as it is.
class Feed implements AsyncIterableIterator<JobEvent>, ChannelListener, PullStream<JobEvent> {
  /** Events known at start, not yet read (null: none). */
  private initial: JobEvent[] | null = null;
  /** Live events waiting to be read (null: none). */
  private live: JobEvent[] | null = null;
  private wake: (() => void) | null = null;
  private consumer: StreamConsumer | null = null;
  private endListener: { ended(): void } | null = null;
  private done = false;
  private failure: Error | null = null;
  /** The channel joined, left by name (see `EventChannels.leave`). */
  private channel: string | null = null;
  private channels: EventChannels | null = null;
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

  /** Joins `name` on `channels`; resolves once Redis confirmed it, so nothing published after is missed. */
  async enter(channels: EventChannels, name: string): Promise<void> {
    await channels.enter(name, this);
    if (this.done) channels.leave(name, this);
    else {
      this.channels = channels;
      this.channel = name;
    }
  }

  setStart(initial: JobEvent[], last: string): void {
    if (initial.length > 0) this.initial = this.initial ? this.initial.concat(initial) : initial.slice();
    this.last = last;
  }

  push(event: JobEvent): void {
    if (this.done) return;
    // Each source delivers in order; a copy of an event already taken (pub/sub after the local
    // relay, or a relay that took over) is dropped here rather than buffered.
    if (this.lastPushed !== null && compareEventIds(event.id, this.lastPushed) <= 0) return;
    this.lastPushed = event.id;
    let live = this.live;
    if (live === null) live = this.live = [];
    if (live.length >= this.maxBuffer) live = this.coalesce(live);
    if (live.length >= this.maxBuffer) {
      this.failure = new SlowSubscriberError(this.maxBuffer);
      this.close();
      return;
    }
    live.push(event);
    this.signal();
  }

  /**
   * For a reader that fell behind: of each job's waiting PROGRESS events only the newest stays
   * (latest wins). Every other event, terminal ones above all, is kept.
   */
  private coalesce(live: JobEvent[]): JobEvent[] {
    const newest = new Map<string, JobEvent>();
    for (const e of live) if (e.type === "PROGRESS") newest.set(e.jobId, e);
    this.live = live.filter((e) => e.type !== "PROGRESS" || newest.get(e.jobId) === e);
    return this.live;
  }

  private signal(): void {
    this.wake?.();
    this.consumer?.ready();
  }

  private close(): void {
    if (!this.done) {
      this.done = true;
      if (this.channels && this.channel !== null) this.channels.leave(this.channel, this);
      this.channels = null;
      this.channel = null;
      const listener = this.endListener;
      this.endListener = null;
      listener?.ended();
    }
    this.signal();
  }

  /** Ends the feed now: what it buffered is dropped and the next read throws `error` (a revoked key). */
  endWith(error: Error): void {
    if (this.ended) return;
    this.initial = null;
    this.live = null;
    this.failure = error;
    this.close();
  }

  notifyEnd(listener: { ended(): void }): void {
    if (this.done) listener.ended();
    else this.endListener = listener;
  }

  consume(consumer: StreamConsumer | null): void {
    this.consumer = consumer;
  }

  /** Delivers `event`; after a terminal event of a job feed, the next read ends the stream. */
  private deliver(event: JobEvent): IteratorResult<JobEvent> {
    if (this.completesOnTerminal && TERMINAL_EVENTS.has(event.type)) {
      this.close();
      this.ended = true;
    }
    return { value: event, done: false };
  }

  /** The next result if one is ready; null when the reader has to wait. Throws the feed's failure once. */
  take(): IteratorResult<JobEvent> | null {
    for (;;) {
      if (this.ended) return DONE;
      const initial = this.initial;
      if (initial !== null) {
        const first = initial.shift() as JobEvent;
        if (initial.length === 0) this.initial = null;
        if (this.types && !this.types.has(first.type)) continue;
        return this.deliver(first);
      }
      const live = this.live;
      if (live !== null && live.length > 0) {
        const event = live.shift() as JobEvent;
        if (live.length === 0) this.live = null;
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
      if (this.done) return DONE;
      return null;
    }
  }

  async next(): Promise<IteratorResult<JobEvent>> {
    for (;;) {
      const result = this.take();
      if (result) return result;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
  }

  async return(): Promise<IteratorResult<JobEvent>> {
    this.close();
    this.ended = true;
    this.consumer = null;
    return DONE;
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
  private subscribe(feed: Feed, channel: string): Promise<void> {
    return feed.enter(this.options.channels, channel);
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
