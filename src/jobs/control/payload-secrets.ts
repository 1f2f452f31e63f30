import type { Logger } from "../../infra/logger.ts";
import type { JobSecretStore, SealedSecret } from "../history/job-secrets.ts";
import { maskedPaths, type PayloadCipher, restoreSecrets, secretValues, UnsealError } from "../payload-cipher.ts";
import type { JobRegistry } from "../registry.ts";

/** A job whose payload may carry secret fields (its real data when enqueued; its history data when read back). */
export interface SecretJob {
  queue: string;
  id: string;
  name: string;
  data: unknown;
}

/** A job's data after restoring what could be: `masked` lists the secret paths still "[redacted]" and `reason` says why. */
export interface Restored {
  data: unknown;
  masked: string[];
  reason: string | null;
}

/**
 * Secret payload fields across a job's life in history. History rows keep them masked; with
 * PAYLOAD_ENCRYPTION_KEYS set, the real values are also kept encrypted in `job_secret` at enqueue,
 * and put back when the job is replayed or recovered from history. Without the keys nothing is kept,
 * and a replay or recovery that would send a masked value is refused instead (see the callers).
 */
export class PayloadSecrets {
  private readonly registry: JobRegistry;
  private readonly store: JobSecretStore;
  private readonly cipher: PayloadCipher | null;
  private readonly log: Logger;

  constructor(registry: JobRegistry, store: JobSecretStore, cipher: PayloadCipher | null, log: Logger) {
    this.registry = registry;
    this.store = store;
    this.cipher = cipher;
    this.log = log;
  }

  /** The job type's secret paths (none for an unknown type). */
  pathsOf(queue: string, name: string): readonly string[] {
    return this.registry.get(queue, name)?.secret ?? [];
  }

  /** Seals and stores the real secret values of `jobs` (nothing without keys, or for jobs that have none); one statement. */
  async keep(jobs: readonly SecretJob[]): Promise<void> {
    const cipher = this.cipher;
    if (!cipher) return;
    const rows: SealedSecret[] = [];
    for (const job of jobs) {
      const paths = this.pathsOf(job.queue, job.name);
      if (paths.length === 0) continue;
      const values = secretValues(job.data, paths);
      if (Object.keys(values).length === 0) continue;
      rows.push({ queue: job.queue, jobId: job.id, keyId: cipher.keyId, sealed: cipher.seal(values, job.queue, job.id) });
    }
    await this.store.put(rows);
  }

  /** Drops what `keep` stored for jobs that were not enqueued after all. */
  async forget(queue: string, ids: readonly string[]): Promise<void> {
    if (this.cipher) await this.store.delete(queue, ids);
  }

  /**
   * `jobs` (history rows of one queue) with their masked secret values put back where a sealed copy
   * opens; one query for all of them, none when nothing is masked.
   */
  async restore(queue: string, jobs: readonly SecretJob[]): Promise<Map<string, Restored>> {
    const out = new Map<string, Restored>();
    const wanting: SecretJob[] = [];
    for (const job of jobs) {
      const masked = maskedPaths(job.data, this.pathsOf(queue, job.name));
      out.set(job.id, { data: job.data, masked, reason: null });
      if (masked.length > 0) wanting.push(job);
    }
    if (wanting.length === 0) return out;
    const cipher = this.cipher;
    if (!cipher) {
      for (const job of wanting) (out.get(job.id) as Restored).reason = "PAYLOAD_ENCRYPTION_KEYS is not set, so they cannot be decrypted";
      return out;
    }
    const sealed = await this.store.get(
      queue,
      wanting.map((j) => j.id),
    );
    for (const job of wanting) {
      const entry = out.get(job.id) as Restored;
      const text = sealed.get(job.id);
      if (text === undefined) {
        entry.reason = "no encrypted copy was kept (the job was enqueued without PAYLOAD_ENCRYPTION_KEYS)";
        continue;
      }
      try {
        entry.data = restoreSecrets(job.data, cipher.open(text, queue, job.id));
        entry.masked = maskedPaths(entry.data, this.pathsOf(queue, job.name));
        if (entry.masked.length > 0) entry.reason = "the encrypted copy does not hold them";
      } catch (err) {
        if (!(err instanceof UnsealError) && !(err instanceof SyntaxError)) throw err;
        entry.reason = err instanceof UnsealError ? `their ${err.message}` : "their encrypted copy is malformed";
        this.log.warn("secret payload fields could not be decrypted", { queue, jobId: job.id, reason: entry.reason });
      }
    }
    return out;
  }
}
