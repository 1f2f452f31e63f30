/**
 * The logger: pino, one JSON object per line on stderr (stdout stays free for tools and the ready
 * line), or pino-pretty's coloured lines for people (`LOG_FORMAT=pretty`, which `npm run dev` sets).
 * Lines written while handling a request carry its `requestId` (log-context.ts, set per HTTP request);
 * the worker's lines about a job pass its `queue` and `jobId` as fields. Secrets are redacted: known fields by name, and passwords in
 * URLs and bearer credentials wherever they appear in a message, a field or an error.
 */
import { createRequire } from "node:module";
import pino, { type DestinationStream } from "pino";
import { logContext } from "./log-context.ts";

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** False when lines of `level` are dropped (callers can skip building them); absent: assume true. */
  enabled?(level: Exclude<LogLevel, "silent">): boolean;
  child(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  /** json (default) or pretty. */
  format?: "json" | "pretty";
  /** Where lines go; default stderr, written synchronously (nothing is lost on process.exit). */
  destination?: DestinationStream;
}

const REDACTED = "[redacted]";

/** Fields whose values are secrets wherever they appear (top level or one object down). */
const SECRET_FIELDS = [
  "authorization",
  "password",
  "secret",
  "token",
  "apiKey",
  "adminApiKey",
  "webhookSecret",
  "metricsToken",
  "jobToken",
  "key",
  "cookie",
];
const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  "headers.authorization",
  "*.headers.authorization",
  "*.headers.cookie",
];

/** `scheme://user:password@` and `Bearer <credential>` inside free text. */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]+@/gi;
const BEARER = /\b(Bearer\s+)[A-Za-z0-9._~+/=-]+/g;

export function scrubSecrets(text: string): string {
  return text.replace(URL_PASSWORD, `$1${REDACTED}@`).replace(BEARER, `$1${REDACTED}`);
}

/** Errors as plain objects (message and stack scrubbed); strings scrubbed; the rest as it is. */
function clean(value: unknown): unknown {
  if (typeof value === "string") return scrubSecrets(value);
  if (value instanceof Error) {
    return { name: value.name, message: scrubSecrets(value.message), stack: value.stack ? scrubSecrets(value.stack) : undefined };
  }
  return value;
}

function cleanFields(fields: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!fields) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = clean(v);
  return out;
}

/** pino-pretty is a development dependency: absent in the production image, where JSON is used. */
function prettyStream(): DestinationStream | undefined {
  try {
    const pretty = createRequire(import.meta.url)("pino-pretty") as (opts: Record<string, unknown>) => DestinationStream;
    return pretty({
      destination: 2,
      sync: true,
      colorize: process.stderr.isTTY === true,
      translateTime: "SYS:HH:MM:ss.l",
      ignore: "pid,hostname",
      singleLine: true,
    });
  } catch {
    process.stderr.write("LOG_FORMAT=pretty: pino-pretty is not installed (a development dependency); logging JSON\n");
    return undefined;
  }
}

function wrap(p: pino.Logger): Logger {
  // A line below the level costs nothing: no scrubbing (regular expressions over the message and
  // every field) for a line pino would drop anyway. Yoga logs at debug several times per request.
  return {
    debug: (msg, fields) => {
      if (p.isLevelEnabled("debug")) p.debug(cleanFields(fields), scrubSecrets(msg));
    },
    info: (msg, fields) => {
      if (p.isLevelEnabled("info")) p.info(cleanFields(fields), scrubSecrets(msg));
    },
    warn: (msg, fields) => {
      if (p.isLevelEnabled("warn")) p.warn(cleanFields(fields), scrubSecrets(msg));
    },
    error: (msg, fields) => {
      if (p.isLevelEnabled("error")) p.error(cleanFields(fields), scrubSecrets(msg));
    },
    enabled: (level) => p.isLevelEnabled(level),
    child: (fields) => wrap(p.child(cleanFields(fields))),
  };
}

export function createLogger(level: LogLevel, base: Record<string, unknown> = {}, options: LoggerOptions = {}): Logger {
  const destination =
    options.destination ?? (options.format === "pretty" ? prettyStream() : undefined) ?? pino.destination({ dest: 2, sync: true });
  const root = pino(
    {
      level,
      base: { pid: process.pid },
      messageKey: "msg",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      // Errors are already plain objects (clean()); pino's own err serializer would add a `type`.
      serializers: { err: (value: unknown) => value },
      // The request's or job's fields (log-context.ts) on every line written on its behalf.
      mixin: () => logContext.getStore() ?? {},
    },
    destination,
  );
  return wrap(Object.keys(base).length > 0 ? root.child(cleanFields(base)) : root);
}
