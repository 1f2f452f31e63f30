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
  /** Set: this listener takes only the events of this tenant's jobs (filtered by the channel, see `EventChannels`). */
  readonly tenant?: string | null;
}

/**
 * An event's tenant (null: none), as the channel's owner reads it: the value itself when known, else a
 * promise of it (for job events: from the event's job, else `TenantCache.resolve`, once per job and instance).
 */
export type TenantOf<E extends ChannelEvent = JobEvent> = (event: E) => string | null | Promise<string | null>;

/** An event's tenant as the fan-out knows it: a tenant, none (null), or unknown (undefined: bound listeners get nothing). */
type Owner = string | null | undefined;

/** Where the relay hands events in its own process (see `EventChannels.emit`). */
export interface LocalDelivery<E extends ChannelEvent = JobEvent> {
  emit(channel: string, event: E): void;
}

interface Channel<E extends ChannelEvent> {
  /** Listeners that take every event of the channel. */
  readonly listeners: Set<ChannelListener<E>>;
  /** Listeners bound to a tenant, by tenant: while there are any, each event's tenant is read before it is handed out. */
  readonly byTenant: Map<string, Set<ChannelListener<E>>>;
  /** Listeners in `byTenant`. */
  tenantBound: number;
  /** The channel's one RedisPubSub subscription; settles once Redis confirmed the SUBSCRIBE (rejects if it failed). */
  readonly subscription: Promise<number>;
  /** The newest event id handed to the listeners, from either source. */
  last: string | null;
  /** Events waiting, in order, behind one whose tenant is being read (null: none). */
  waiting: E[] | null;
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
 *
 * Tenant-bound listeners (a tenant-bound key's `queueEvents`) are filtered here, at the fan-out: the
 * event's tenant is read once (`tenantOf`), and the event goes only to the listeners of that tenant
 * (kept apart, by tenant) and the unbound ones. A queue channel with 10,000 listeners over 100
 * tenants thus does per event what one with 100 listeners would. Events wait, in order, while a
 * tenant is being read. Without `tenantOf`, tenant-bound listeners get nothing.
 */
export class EventChannels<E extends ChannelEvent = JobEvent> implements LocalDelivery<E> {
  private readonly channels = new Map<string, Channel<E>>();

  private readonly pubsub: RedisPubSub;
  private readonly log: Logger;
  private readonly parse: (payload: unknown) => E;
  private readonly tenantOf: TenantOf<E> | null;

  /**
   * `pubsub` must deliver messages as text: `new RedisPubSub({ ..., deserializer: (b) => b.toString() })`.
   * `parse` validates a message's JSON (job events by default; bulk actions' progress has its own).
   * `tenantOf` reads an event's tenant, for tenant-bound listeners.
   */
  constructor(pubsub: RedisPubSub, log: Logger, parse?: ((payload: unknown) => E) | null, tenantOf: TenantOf<E> | null = null) {
    this.pubsub = pubsub;
    this.log = log;
    this.parse = parse ?? (parseJobEvent as unknown as (payload: unknown) => E);
    this.tenantOf = tenantOf;
  }

  /**
   * Adds `listener` to `channel`; resolves once Redis confirmed the channel's subscription, so
   * nothing published after that is missed. Returns the function that removes the listener.
   */
  async join(name: string, listener: ChannelListener<E>): Promise<() => void> {
    await this.enter(name, listener);
    return () => this.leave(name, listener);
  }

  /**
   * `join` without a function to keep: resolves once Redis confirmed the channel's subscription
   * (rejects, having left, if it failed); `leave(name, listener)` removes the listener. What a
   * subscription's feed uses, so it holds no closure for it.
   */
  async enter(name: string, listener: ChannelListener<E>): Promise<void> {
    let channel = this.channels.get(name);
    if (!channel) {
      const subscription = this.pubsub.subscribe<string>(name, (message) => this.onMessage(name, message));
      channel = { listeners: new Set(), byTenant: new Map(), tenantBound: 0, subscription, last: null, waiting: null };
      this.channels.set(name, channel);
      const created = channel;
      // A failed SUBSCRIBE: forget the channel so the next join tries again (each joiner gets the error).
      subscription.catch(() => {
        if (this.channels.get(name) === created) this.channels.delete(name);
      });
    }
    const tenant = listener.tenant;
    if (tenant == null) channel.listeners.add(listener);
    else {
      let bound = channel.byTenant.get(tenant);
      if (!bound) {
        bound = new Set();
        channel.byTenant.set(tenant, bound);
      }
      if (!bound.has(listener)) {
        bound.add(listener);
        channel.tenantBound++;
      }
    }
    try {
      await channel.subscription;
    } catch (err) {
      this.leaveChannel(name, channel, listener);
      throw err;
    }
  }

  /** Removes `listener` from `name` (nothing if it is not there); the last one to leave unsubscribes. */
  leave(name: string, listener: ChannelListener<E>): void {
    const channel = this.channels.get(name);
    if (channel) this.leaveChannel(name, channel, listener);
  }

  private leaveChannel(name: string, channel: Channel<E>, listener: ChannelListener<E>): void {
    const tenant = listener.tenant;
    if (tenant == null) {
      if (!channel.listeners.delete(listener)) return;
    } else {
      const bound = channel.byTenant.get(tenant);
      if (!bound?.delete(listener)) return;
      channel.tenantBound--;
      if (bound.size === 0) channel.byTenant.delete(tenant);
    }
    if (channel.listeners.size + channel.tenantBound > 0) return;
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
    const channel = this.channels.get(name);
    return channel ? channel.listeners.size + channel.tenantBound : 0;
  }

  /** Listeners of every channel in this process: the subscriptions open (for /metrics). */
  listenerTotal(): number {
    let n = 0;
    for (const channel of this.channels.values()) n += channel.listeners.size + channel.tenantBound;
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
    if (channel.waiting) {
      channel.waiting.push(event);
      return;
    }
    if (channel.tenantBound === 0) {
      for (const listener of channel.listeners) listener.push(event);
      return;
    }
    const tenant = this.tenantOfEvent(event);
    if (!(tenant instanceof Promise)) {
      this.fanOut(channel, event, tenant);
      return;
    }
    // The tenant is being read: this event and those after it wait, in order.
    channel.waiting = [event];
    void this.drainWaiting(channel, tenant);
  }

  /** The event's tenant; undefined when it can't be known (no resolver): then no tenant-bound listener gets it. */
  private tenantOfEvent(event: E): Owner | Promise<string | null> {
    return this.tenantOf ? this.tenantOf(event) : undefined;
  }

  /** Hands `event` to the unbound listeners and to those bound to `tenant` (null or undefined: to none of the bound). */
  private fanOut(channel: Channel<E>, event: E, tenant: Owner): void {
    for (const listener of channel.listeners) listener.push(event);
    if (typeof tenant !== "string") return;
    const bound = channel.byTenant.get(tenant);
    if (bound) for (const listener of bound) listener.push(event);
  }

  private async drainWaiting(channel: Channel<E>, first: Promise<string | null>): Promise<void> {
    let pending: Owner | Promise<string | null> = first;
    const waiting = channel.waiting as E[];
    for (let i = 0; i < waiting.length; i++) {
      const event = waiting[i] as E;
      if (i > 0) pending = channel.tenantBound === 0 ? null : this.tenantOfEvent(event);
      let tenant: Owner;
      try {
        tenant = pending instanceof Promise ? await pending : pending;
      } catch (err) {
        this.log.error("reading an event's tenant failed; it goes to unbound subscribers only", { id: event.id, err });
        tenant = undefined;
      }
      this.fanOut(channel, event, tenant);
    }
    channel.waiting = null;
  }
}
