import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { REDACTED } from "./job-view.ts";

/** One PAYLOAD_ENCRYPTION_KEYS entry: an id (kept with each ciphertext) and 32 bytes of AES-256 key. */
export interface PayloadKey {
  id: string;
  key: Buffer;
}

/** Why a sealed value could not be opened. */
export type UnsealReason = "unknown key" | "tampered or wrong key" | "malformed";

export class UnsealError extends Error {
  readonly reason: UnsealReason;
  readonly keyId: string | null;
  constructor(reason: UnsealReason, keyId: string | null) {
    super(`secret payload fields could not be decrypted (${reason}${keyId ? `, key id "${keyId}"` : ""})`);
    this.name = "UnsealError";
    this.reason = reason;
    this.keyId = keyId;
  }
}

const VERSION = "v1";
const b64 = (b: Buffer) => b.toString("base64url");

/**
 * AES-256-GCM over the JSON of a job's secret values (`{ path: value }`), bound to the job: the
 * associated data is its queue and id, so a ciphertext copied to another job's row does not open.
 * Sealed text: `v1.<key id>.<iv>.<tag>.<ciphertext>` (base64url). The first key seals; every key
 * opens (rotation: put the new key first, keep the old ones until nothing sealed with them is
 * needed; `job_secret.key_id` says what still is).
 */
export class PayloadCipher {
  private readonly current: PayloadKey;
  private readonly byId: Map<string, Buffer>;

  constructor(keys: readonly PayloadKey[]) {
    const [first] = keys;
    if (!first) throw new Error("PayloadCipher needs at least one key");
    for (const k of keys) if (k.key.length !== 32) throw new Error(`payload key "${k.id}" is not 32 bytes`);
    this.current = first;
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  get keyId(): string {
    return this.current.id;
  }

  seal(values: Record<string, unknown>, queue: string, jobId: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.current.key, iv);
    cipher.setAAD(associatedData(queue, jobId));
    const ciphertext = Buffer.concat([cipher.update(JSON.stringify(values), "utf8"), cipher.final()]);
    return [VERSION, this.current.id, b64(iv), b64(cipher.getAuthTag()), b64(ciphertext)].join(".");
  }

  /** The values sealed for this job; throws an UnsealError when the key is unknown or the text was altered. */
  open(sealed: string, queue: string, jobId: string): Record<string, unknown> {
    const parts = sealed.split(".");
    if (parts.length !== 5 || parts[0] !== VERSION) throw new UnsealError("malformed", null);
    const [, keyId, iv, tag, ciphertext] = parts as [string, string, string, string, string];
    const key = this.byId.get(keyId);
    if (!key) throw new UnsealError("unknown key", keyId);
    const ivBytes = Buffer.from(iv, "base64url");
    const tagBytes = Buffer.from(tag, "base64url");
    if (ivBytes.length !== 12 || tagBytes.length !== 16) throw new UnsealError("malformed", keyId);
    let text: string;
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, ivBytes, { authTagLength: 16 });
      decipher.setAAD(associatedData(queue, jobId));
      decipher.setAuthTag(tagBytes);
      text = Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString("utf8");
    } catch {
      throw new UnsealError("tampered or wrong key", keyId);
    }
    const values: unknown = JSON.parse(text);
    if (!values || typeof values !== "object" || Array.isArray(values)) throw new UnsealError("malformed", keyId);
    return values as Record<string, unknown>;
  }
}

function associatedData(queue: string, jobId: string): Buffer {
  return Buffer.from(`${queue}\u0000${jobId}`, "utf8");
}

/** The values at `paths` of `data` that `redact` would mask (present and not null), by path. */
export function secretValues(data: unknown, paths: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const path of paths) {
    const value = at(data, path.split("."));
    if (value !== undefined && value !== null && value !== REDACTED) out[path] = value;
  }
  return out;
}

/** `data` with each path of `values` set back to its value where `data` holds REDACTED there; the rest shared. */
export function restoreSecrets(data: unknown, values: Record<string, unknown>): unknown {
  let out = data;
  for (const [path, value] of Object.entries(values)) out = setMasked(out, path.split("."), value);
  return out;
}

/** The secret paths of `data` that still read REDACTED (values a processor must not get). */
export function maskedPaths(data: unknown, paths: readonly string[]): string[] {
  return paths.filter((path) => at(data, path.split(".")) === REDACTED);
}

function at(value: unknown, keys: string[]): unknown {
  let v = value;
  for (const key of keys) {
    if (!v || typeof v !== "object" || Array.isArray(v) || !Object.hasOwn(v, key)) return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function setMasked(value: unknown, keys: string[], replacement: unknown): unknown {
  if (!value || typeof value !== "object" || Array.isArray(value)) return value;
  const [key, ...rest] = keys as [string, ...string[]];
  if (!Object.hasOwn(value, key)) return value;
  const obj = value as Record<string, unknown>;
  const next = rest.length === 0 ? (obj[key] === REDACTED ? replacement : obj[key]) : setMasked(obj[key], rest, replacement);
  return next === obj[key] ? value : { ...obj, [key]: next };
}
