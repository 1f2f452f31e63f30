import { z } from "zod";
import type { ChannelListener, EventChannels } from "./channels.ts";
import { compareEventIds } from "./job-event.ts";

export const BULK_ACTION_EVENT_TYPES = ["SNAPSHOT", "PROGRESS", "DONE"] as const;
export type BulkActionEventType = (typeof BULK_ACTION_EVENT_TYPES)[number];
export const BULK_ACTION_STATUSES = ["PENDING", "RUNNING", "DONE"] as const;
export type BulkActionStatus = (typeof BULK_ACTION_STATUSES)[number];

/**
 * Progress of one bulk action: its counts so far, each event carrying all of them (so a reader that
 * falls behind needs only the newest). `id` is `<processed>-0`, and `<processed>-1` for DONE: it
 * increases with every batch whichever API instance runs it, so the channels' dedupe holds across a
 * restart and a takeover.
 */
export interface BulkActionEvent {
  id: string;
  type: BulkActionEventType;
  selectionId: string;
  status: BulkActionStatus;
  total: number;
  processed: number;
  acted: number;
  skipped: number;
  failed: number;
  at: Date;
}

const schema = z.object({
  id: z.string(),
  type: z.enum(BULK_ACTION_EVENT_TYPES),
  selectionId: z.string(),
  status: z.enum(BULK_ACTION_STATUSES),
  total: z.number().int(),
  processed: z.number().int(),
  acted: z.number().int(),
  skipped: z.number().int(),
  failed: z.number().int(),
  at: z.coerce.date(),
});

/** A bulk action event from pub/sub's JSON, dates included. */
export function parseBulkActionEvent(payload: unknown): BulkActionEvent {
  return schema.parse(payload);
}

/** The event id of a bulk action's counts (see BulkActionEvent). */
export function bulkEventId(processed: number, done: boolean): string {
  return `${processed}-${done ? 1 : 0}`;
}

/**
 * One subscriber's events of a bulk action: the counts now (a SNAPSHOT), then each newer event, and
 * the end after DONE. Events carry cumulative counts, so a subscriber that does not keep up gets the
 * newest one only (latest wins; DONE is always the last): its buffer is one event.
 */
class BulkFeed implements AsyncIterableIterator<BulkActionEvent>, ChannelListener<BulkActionEvent> {
  private first: BulkActionEvent | null = null;
  private pending: BulkActionEvent | null = null;
  private last = "";
  private wake: (() => void) | null = null;
  private closed = false;
  private unsubscribe: (() => void) | null = null;

  attach(unsubscribe: () => void): void {
    if (this.closed) unsubscribe();
    else this.unsubscribe = unsubscribe;
  }

  start(snapshot: BulkActionEvent): void {
    this.first = snapshot;
    this.last = snapshot.id;
    if (this.pending && compareEventIds(this.pending.id, this.last) <= 0) this.pending = null;
  }

  push(event: BulkActionEvent): void {
    if (this.closed) return;
    if (this.pending && compareEventIds(event.id, this.pending.id) <= 0) return;
    this.pending = event;
    this.wake?.();
  }

  async next(): Promise<IteratorResult<BulkActionEvent>> {
    for (;;) {
      const first = this.first;
      if (first) {
        this.first = null;
        if (first.status === "DONE") this.close();
        return { value: first, done: false };
      }
      const event = this.pending;
      if (event) {
        this.pending = null;
        if (compareEventIds(event.id, this.last) <= 0) continue;
        this.last = event.id;
        if (event.type === "DONE") this.close();
        return { value: event, done: false };
      }
      if (this.closed) return { value: undefined, done: true };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
  }

  private close(): void {
    this.closed = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.wake?.();
  }

  async return(): Promise<IteratorResult<BulkActionEvent>> {
    this.close();
    this.first = null;
    this.pending = null;
    return { value: undefined, done: true };
  }

  async throw(err: unknown): Promise<IteratorResult<BulkActionEvent>> {
    this.close();
    throw err;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<BulkActionEvent> {
    return this;
  }
}

/**
 * Opens a subscription to a bulk action's progress on `channel`: joins it first (resolving once
 * Redis confirmed the subscription), then reads the counts now with `current`, so no event published
 * after the read is missed and none before it is sent twice. Throws what `current` throws.
 */
export async function bulkActionFeed(
  channels: EventChannels<BulkActionEvent>,
  channel: string,
  current: () => Promise<BulkActionEvent>,
): Promise<AsyncIterableIterator<BulkActionEvent>> {
  const feed = new BulkFeed();
  feed.attach(await channels.join(channel, feed));
  try {
    feed.start(await current());
    return feed;
  } catch (err) {
    await feed.return();
    throw err;
  }
}
