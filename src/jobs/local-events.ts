import type { JobEvent } from "./events.ts";

/**
 * Hands events from this process's relay straight to this process's subscribers, without the round
 * trip through Redis pub/sub. The pub/sub copy still arrives (other instances need it) and is
 * dropped as already seen, since subscribers only accept ids past the last one they took.
 */
export class LocalEvents {
  private readonly handlers = new Map<string, Set<(event: JobEvent) => void>>();

  /** Calls `handler` for every event emitted on `channel`; returns the function that stops it. */
  on(channel: string, handler: (event: JobEvent) => void): () => void {
    const set = this.handlers.get(channel) ?? new Set();
    set.add(handler);
    this.handlers.set(channel, set);
    return () => {
      set.delete(handler);
      if (set.size === 0) this.handlers.delete(channel);
    };
  }

  emit(channel: string, event: JobEvent): void {
    for (const handler of this.handlers.get(channel) ?? []) handler(event);
  }
}
