// Public face of src/jobs/events. Job events: their types and ids, reading BullMQ's events stream, the relay to pub/sub, channels and per-subscriber feeds.
// Code outside src/jobs imports this file only (npm run lint checks it).
// The pub/sub channel names (built in src/jobs/bullmq/keys.ts).
export { channels } from "../bullmq/index.ts";
export * from "./bulk-action-feed.ts";
export { type ChannelEvent, type ChannelListener, EventChannels, type LocalDelivery, type TenantOf } from "./channels.ts";
export { type EventFeedOptions, EventFeeds, isPullStream, type PullStream, type StreamConsumer } from "./feed.ts";
export { compareEventIds, EventStream, JOB_EVENT_TYPES, type JobEvent, type JobEventType, type LoadJob } from "./job-event.ts";
export { EventRelay, type EventRelayOptions } from "./relay.ts";
