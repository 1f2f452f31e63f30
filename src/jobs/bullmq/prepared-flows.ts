import type { Socket } from "node:net";
import type { FlowJob, FlowOpts, JobNode, Telemetry } from "bullmq";
import type { Redis } from "ioredis";
import { ReservedIdFlowProducer } from "./job-ids.ts";

/** Most flows prepared at once (one connection each); more at the same time take the plain gated path. */
const MAX_CONNECTIONS = 4;
/** How long a transaction, once sent, may take to answer before its connection is dropped (as `commandTimeout` does elsewhere). */
const SEND_TIMEOUT_MS = 2_000;

interface Slot {
  connection: Redis;
  producer: ReservedIdFlowProducer;
  /** Its producer has connected once (BullMQ's start-up commands are behind it). */
  warm: boolean;
  busy: boolean;
}

/**
 * A flow's Redis transaction built and encoded while its gate (the commit of its history rows) is
 * pending, and sent the moment the gate resolves, on connections of its own, one flow at a time on
 * each. BullMQ's whole `add` runs at once into the connection's socket while the socket is corked, so
 * Node holds the bytes (ioredis encoding 101 commands is ~1 ms that then no longer waits for the
 * commit); when the gate resolves the socket is uncorked (one write), and when the gate rejects, or
 * the add fails before it, the socket is destroyed with the bytes in it: Redis never sees them.
 *
 * What keeps "nothing reaches Redis before the gate" true on these connections: they never queue a
 * command while disconnected (it would be written on reconnect, past the cork), never resend
 * unanswered commands after a reconnect (a resend would skip the gate), and reject every unanswered
 * command when the connection closes (`maxRetriesPerRequest: 0`), so an add whose socket died fails
 * instead of waiting for a resend. `add` answers null (the caller takes the plain gated path, which
 * sends nothing before the gate either) when no connection is free and ready, on a Redis Cluster
 * (no single socket), and while a new connection warms up.
 */
export class PreparedFlows {
  private readonly slots: Slot[] = [];
  private readonly base: Redis;
  private readonly prefix: string;
  private readonly telemetry: Telemetry | undefined;
  private closed = false;

  constructor(base: Redis, prefix: string, telemetry?: Telemetry) {
    this.base = base;
    this.prefix = prefix;
    this.telemetry = telemetry;
    // One connection from the start: made on the first flow, it serves the second.
    this.open();
  }

  /** The flow added once `gate` resolves, sent at once then; null when it cannot be prepared now (see the class). */
  add(flow: FlowJob, opts: FlowOpts, gate: Promise<unknown>): Promise<JobNode> | null {
    const slot = this.slots.find((s) => !s.busy && s.warm && s.connection.status === "ready");
    if (!slot) {
      // Every connection holds a flow: one more for the next ones (not while one is still connecting).
      if (this.slots.every((s) => s.busy) && this.slots.length < MAX_CONNECTIONS && !this.closed) this.open();
      return null;
    }
    return this.send(slot, flow, opts, gate);
  }

  private open(): void {
    const connection = this.base.duplicate({
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      // The add waits for its gate with its commands already issued: the timeout starts once sent (below).
      commandTimeout: undefined,
    });
    connection.on("error", () => {});
    const producer = new ReservedIdFlowProducer({
      connection,
      prefix: this.prefix,
      ...(this.telemetry ? { telemetry: this.telemetry } : {}),
    });
    producer.on("error", () => {});
    const slot: Slot = { connection, producer, warm: false, busy: false };
    this.slots.push(slot);
    producer.waitUntilReady().then(
      () => {
        slot.warm = true;
      },
      () => this.drop(slot),
    );
  }

  /** Out of the pool for good (a later add opens a new connection): closed, and never reconnected. */
  private drop(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    slot.producer.close().catch(() => {});
    slot.connection.disconnect();
  }

  private async send(slot: Slot, flow: FlowJob, opts: FlowOpts, gate: Promise<unknown>): Promise<JobNode> {
    slot.busy = true;
    const { connection } = slot;
    const socket = connection.stream as Socket;
    socket.cork();
    let held = true;
    let timer: NodeJS.Timeout | undefined;
    // The bytes must never go out: the socket is destroyed with them in it (ioredis' own disconnect
    // would end() it, which sends them), then the connection is closed for good, so no reconnect
    // gives a late command of this add a socket to go out on. ioredis fails the add's commands.
    const abort = () => {
      if (!held) return;
      held = false;
      connection.off("close", abort);
      socket.destroy();
      this.drop(slot);
    };
    // The connection closed while holding them (Redis or the network dropped it).
    connection.once("close", abort);
    try {
      const adding = slot.producer.add(flow, opts);
      // Failed before it was sent: what it holds must never go out.
      adding.catch(abort);
      gate.then(() => {
        if (!held) return;
        held = false;
        connection.off("close", abort);
        socket.uncork();
        timer = setTimeout(() => socket.destroy(), SEND_TIMEOUT_MS);
      }, abort);
      return await adding;
    } finally {
      clearTimeout(timer);
      slot.busy = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const slot of this.slots.splice(0)) {
      await slot.producer.close().catch(() => {});
      slot.connection.disconnect();
    }
  }
}
