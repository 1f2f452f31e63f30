// Public face of src/jobs/events. Job events: their types and ids, reading BullMQ's events stream, the relay to pub/sub, channels and per-subscriber feeds.
// Code outside src/jobs imports this file only (npm run lint checks it).
export * from "./channels.ts";
export * from "./feed.ts";
export * from "./job-event.ts";
export * from "./relay.ts";
