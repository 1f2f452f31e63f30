import type { Logger } from "../infra/logger.ts";
import type { RedisClient } from "../infra/redis.ts";
import type { RevocationBus } from "./access-service.ts";

/** The pub/sub channel revocations travel on (under QUEUE_PREFIX, so deployments sharing a Redis stay apart). */
export function revocationChannel(prefix: string): string {
  return `${prefix}:access:revoked`;
}

/**
 * Revocations between API instances over Redis pub/sub: `publish` sends a key id; every instance
 * (the sender too) hands it to `onRevoked`. A message lost while an instance is disconnected is
 * covered by the key cache's 4 s lifetime.
 */
export class RedisRevocationBus implements RevocationBus {
  private readonly publisher: RedisClient;
  private readonly subscriber: RedisClient;
  private readonly channel: string;

  constructor(publisher: RedisClient, subscriber: RedisClient, prefix: string) {
    this.publisher = publisher;
    this.subscriber = subscriber;
    this.channel = revocationChannel(prefix);
  }

  /** Subscribes; resolves once Redis confirmed. `onRevoked` gets each revoked key id. */
  async start(onRevoked: (keyId: string) => void, log: Logger): Promise<void> {
    this.subscriber.on("message", (channel: string, message: string) => {
      if (channel !== this.channel) return;
      if (!/^[0-9a-f-]{36}$/i.test(message)) {
        log.warn("ignoring a malformed revocation message", { length: message.length });
        return;
      }
      onRevoked(message);
    });
    await this.subscriber.subscribe(this.channel);
  }

  async publish(keyId: string): Promise<void> {
    await this.publisher.publish(this.channel, keyId);
  }
}
