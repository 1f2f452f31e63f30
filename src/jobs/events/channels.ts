import type { RedisPubSub } from "graphql-redis-subscriptions";
import type { Logger } from "../../infra/logger.ts";
import { compareEventIds, type JobEvent, parseJobEvent } from "./job-event.ts";

/** What crosses a channel: anything with an id that increases along the channel. */
export interface ChannelEvent {
  id: string;
}

/** Something that takes a channel's events in order (a subscription's feed). */
export interface ChannelListener<E extends ChannelEvent = JobEvent> {
  push(event: E): void;
}

/** Where the relay hands events in its own process (see `EventChannels.emit`). */
export interface LocalDelivery<E extends ChannelEvent = JobEvent> {
  emit(channel: string, event: E): void;
}

interface Channel<E extends ChannelEvent> {
  readonly listeners: Set<ChannelListener<E>>;
  /** The channel's one RedisPubSub subscription; settles once Redis confirmed the SUBSCRIBE (rejects if it failed). */
  readonly subscription: Promise<number>;
  /** The newest event id handed to the listeners, from either source. */
  last: string | null;
}

/**
 * One Redis subscription per channel for the whole process, however many subscriptions watch it:
 * the first listener of a channel subscribes (through graphql-redis-subscriptions' RedisPubSub, with
 * a deserializer that hands over the raw text), the last one to leave unsubscribes. Each message is
 * parsed once and handed to every listener of its channel.
 *
 * Events reach a channel from two sources: Redis pub/sub and, in the instance that relays the
 * queue, the relay itself (`emit`, which skips the pub/sub round trip). Each source is in order,
 * so an event whose id is not past the channel's last one is a copy already handed out (the
 * pub/sub echo of a local event, or an event a relay that took over published again) and is
 * dropped here, before it is even validated. A listener that joins later starts from a stream
 * position it reads after joining, which is past every event handed out before it joined.
 */
export class EventChannels<E extends ChannelEvent = JobEvent> implements LocalDelivery<E> {
  private readonly channels = new Map<string, Channel<E>>();

  private readonly pubsub: RedisPubSub;
  private readonly log: Logger;
  private readonly parse: (payload: unknown) => E;

  /**
   * `pubsub` must deliver messages as text: `new RedisPubSub({ ..., deserializer: (b) => b.toString() })`.
   * `parse` validates a message's JSON (job events by default; bulk actions' progress has its own).
   */
  constructor(pubsub: RedisPubSub, log: Logger, parse?: (payload: unknown) => E) {
    this.pubsub = pubsub;
    this.log = log;
    this.parse = parse ?? (parseJobEvent as unknown as (payload: unknown) => E);
  }

  /**
   * Adds `listener` to `channel`; resolves once Redis confirmed the channel's subscription, so
   * nothing published after that is missed. Returns the function that removes the listener.
   */
  async join(name: string, listener: ChannelListener<E>): Promise<() => void> {
    let channel = this.channels.get(name);
    if (!channel) {
      const subscription = this.pubsub.subscribe<string>(name, (message) => this.onMessage(name, message));
      channel = { listeners: new Set(), subscription, last: null };
      this.channels.set(name, channel);
      const created = channel;
      // A failed SUBSCRIBE: forget the channel so the next join tries again (each joiner gets the error).
      subscription.catch(() => {
        if (this.channels.get(name) === created) this.channels.delete(name);
      });
    }
    channel.listeners.add(listener);
    const joined = channel;
    const leave = () => this.leave(name, joined, listener);
    try {
      await channel.subscription;
    } catch (err) {
      leave();
      throw err;
    }
    return leave;
  }

  private leave(name: string, channel: Channel<E>, listener: ChannelListener<E>): void {
    if (!channel.listeners.delete(listener) || channel.listeners.size > 0) return;
    if (this.channels.get(name) !== channel) return;
    this.channels.delete(name);
    // Redis runs SUBSCRIBE and UNSUBSCRIBE in order, so a join right after this one subscribes again.
    channel.subscription.then(
      (id) => this.pubsub.unsubscribe(id),
      () => undefined,
    );
  }

  /** Hands an event of this process's relay to the channel's listeners. */
  emit(name: string, event: E): void {
    const channel = this.channels.get(name);
    if (channel) this.deliver(channel, event);
  }

  /** Listeners of `channel` in this process (for tests). */
  listenerCount(name: string): number {
    return this.channels.get(name)?.listeners.size ?? 0;
  }

  /** Listeners of every channel in this process: the subscriptions open (for /metrics). */
  listenerTotal(): number {
    let n = 0;
    for (const channel of this.channels.values()) n += channel.listeners.size;
    return n;
  }

  private onMessage(name: string, message: string): void {
    const channel = this.channels.get(name);
    if (!channel) return;
    let event: E;
    try {
      const payload = JSON.parse(message) as { id?: unknown };
      if (typeof payload.id === "string" && channel.last !== null && compareEventIds(payload.id, channel.last) <= 0) return;
      event = this.parse(payload);
    } catch (err) {
      this.log.error("dropping a malformed event from pub/sub", { channel: name, err });
      return;
    }
    this.deliver(channel, event);
  }

  private deliver(channel: Channel<E>, event: E): void {
    if (channel.last !== null && compareEventIds(event.id, channel.last) <= 0) return;
    channel.last = event.id;
    for (const listener of channel.listeners) listener.push(event);
  }
}
