import type { FlowJob, JobsOptions } from "bullmq";
import { z } from "zod";
import type { Logger } from "../../infra/logger.ts";
import { type ChildrenCounts, liveChildrenCounts, liveChildrenValues } from "../bullmq/flows.ts";
import { jobStateIfExists } from "../bullmq/internals.ts";
import type { PreparedBulk } from "../bullmq/job-ids.ts";
import type { QueueSet } from "../bullmq/queue-set.ts";
import { NotFoundError, UnavailableError, ValidationError, type ValidationIssue } from "../errors.ts";
import type { DurableRecords } from "../history/durable-records.ts";
import type { HistoryStore } from "../history/history-store.ts";
import type { JobLogStore } from "../history/job-logs.ts";
import { DEFAULT_MAX_DATA_DEPTH, inputProblem } from "../input-checks.ts";
import { fromBullState, type JobMeta, type JobState, type JobView, META_KEY, redact, viewFromBull } from "../job-view.ts";
import type { JobRegistry } from "../registry.ts";
import { DurableEnqueue, type EnqueueWrite } from "./durable-enqueue.ts";
import type { PayloadSecrets, SecretJob } from "./payload-secrets.ts";

/** BullMQ's priority range: 1 (highest) to 2^21. */
export const MAX_PRIORITY = 2_097_152;

export interface EnqueueInput {
  queue: string;
  name: string;
  data: unknown;
  /** 1 is highest; omit for plain FIFO. */
  priority?: number | null;
  delayMs?: number | null;
  attempts?: number | null;
  backoff?: { type: "FIXED" | "EXPONENTIAL"; delayMs: number } | null;
  /** Idempotency key: while a job with this id is known, enqueueing it again returns that job. */
  jobId?: string | null;
  /** The tenant the job belongs to (the access layer decides who may set it). */
  tenant?: string | null;
}

/**
 * What a flow child's final failure does to its parent: BullMQ's options, at most one per child.
 * None: BullMQ's default, the parent keeps waiting (a retried child lets it go on). BullMQ's
 * continueParentOnFailure is left out: it starts the parent while siblings are still pending, and
 * BullMQ then fails the parent at completion ("has pending dependencies") unless its processor
 * removes them, which no processor here does.
 */
export const PARENT_POLICIES = ["failParentOnFailure", "ignoreDependencyOnFailure", "removeDependencyOnFailure"] as const;
export type ParentPolicy = (typeof PARENT_POLICIES)[number];

/** One node of `enqueueFlow`'s tree: a job like `enqueue`'s, its children, and (on a child) its parent policy. */
export interface FlowNodeInput extends EnqueueInput, Partial<Record<ParentPolicy, boolean | null>> {
  children?: readonly FlowNodeInput[] | null;
  /** The job this node replays (replayJob of a flow parent sets it on every node; clients cannot). */
  replayOf?: string | null;
}

/** Whether the caller may see a job: an idempotent enqueue never hands back a job it may not see. */
export type JobVisibility = (job: JobView) => boolean;

const TENANT = /^[A-Za-z0-9][A-Za-z0-9_.@:-]*$/;

export interface JobServiceOptions {
  /** Largest accepted payload, in bytes of its JSON. */
  maxPayloadBytes: number;
  /** Most inputs one `enqueueMany` call takes. */
  maxBulkEnqueue: number;
  /** Most nodes one `enqueueFlow` tree may hold (MAX_FLOW_NODES); default 1000. */
  maxFlowNodes?: number;
  /** Most levels one `enqueueFlow` tree may have (MAX_FLOW_DEPTH); default 10. */
  maxFlowDepth?: number;
  /** Deepest nesting of `data` (MAX_DATA_DEPTH); default 64. */
  maxDataDepth?: number;
  /**
   * `record` (default): answer once the history row is committed, row before job (durable enqueue).
   * `redis`: add the job and answer, writing the row after without waiting (faster; a job Redis
   * loses before its row commits cannot be recovered, and a failed row write is only logged).
   */
  enqueueAck?: "record" | "redis";
  /** Where `getLogs` reads a job's lines once Redis no longer has them. */
  logs?: JobLogStore;
  /** Keeps the real values of secret payload fields encrypted for replays and recovery (PAYLOAD_ENCRYPTION_KEYS). */
  secrets?: PayloadSecrets;
}

const optionsSchema = z.object({
  priority: z.number().int().min(1).max(MAX_PRIORITY).nullish(),
  delayMs: z
    .number()
    .int()
    .min(0)
    .max(365 * 24 * 3600 * 1000)
    .nullish(),
  attempts: z.number().int().min(1).max(1000).nullish(),
  backoff: z
    .object({
      type: z.enum(["FIXED", "EXPONENTIAL"]),
      delayMs: z
        .number()
        .int()
        .min(0)
        .max(24 * 3600 * 1000),
    })
    .nullish(),
  jobId: z
    .string()
    .min(1)
    .max(256)
    .refine((v) => !v.includes(":"), "must not contain ':'")
    .refine((v) => !/^\d+$/.test(v), "must not be a plain integer (BullMQ reserves those for its own ids)")
    .nullish(),
  tenant: z
    .string()
    .min(1, "must not be empty (omit it for no tenant)")
    .max(200, "must be at most 200 characters")
    .regex(TENANT, "may contain letters, digits and _ . @ : - (starting with a letter or digit)")
    .nullish(),
});

/** The answer for a jobId held by a job the caller may not see: the id is taken, nothing about the job is told. */
function jobIdTaken(path: string[]): ValidationError {
  return ValidationError.at(path, "is already used by another job; choose another");
}

/** The backoff as the history row keeps it (BullMQ's own `{ type, delay }`). */
function backoffOf(opts: JobsOptions): unknown {
  return typeof opts.backoff === "object" ? opts.backoff : null;
}

/** The job as it will be once added, for its history row, which is written before the add. */
function pendingView(
  queue: string,
  id: string,
  name: string,
  data: unknown,
  meta: JobMeta,
  opts: JobsOptions,
  createdAt: Date,
  flow: { parent: JobView | null; hasChildren: boolean } = { parent: null, hasChildren: false },
): JobView {
  const state: JobState = flow.hasChildren ? "WAITING_CHILDREN" : opts.delay ? "DELAYED" : opts.priority ? "PRIORITIZED" : "WAITING";
  return {
    id,
    queue,
    name,
    data,
    state,
    progress: null,
    attemptsMade: 0,
    maxAttempts: opts.attempts ?? 1,
    priority: opts.priority ?? 0,
    createdAt,
    startedAt: null,
    finishedAt: null,
    result: null,
    failedReason: null,
    replayOfId: meta.replayOf ?? null,
    tenant: meta.tenant ?? null,
    parentQueue: flow.parent?.queue ?? null,
    parentId: flow.parent?.id ?? null,
  };
}

/** The meta of one node of a flow: the call's, and the job it replays when it has one. */
function nodeMeta(meta: JobMeta, node: FlowNodeInput): JobMeta {
  return node.replayOf ? { ...meta, replayOf: node.replayOf } : meta;
}

/** A node of a flow being enqueued, flattened: its input, where it is in the tree, its parent's index. */
interface FlowNode {
  input: FlowNodeInput;
  path: string[];
  parent: number | null;
  depth: number;
}

/**
 * The tree in pre-order (a parent before its children), walked without recursion so a hostile tree
 * costs at most `maxNodes + 1` steps and no stack: throws a ValidationError when it holds more than
 * `maxNodes` nodes or is deeper than `maxDepth` levels.
 */
function flatten(root: FlowNodeInput, maxNodes: number, maxDepth: number): FlowNode[] {
  const nodes: FlowNode[] = [];
  const stack: FlowNode[] = [{ input: root, path: [], parent: null, depth: 1 }];
  while (stack.length > 0) {
    const node = stack.pop() as FlowNode;
    if (node.depth > maxDepth) {
      throw ValidationError.at(node.path, `is at level ${node.depth} of the tree; a flow has at most ${maxDepth} levels (MAX_FLOW_DEPTH)`);
    }
    const index = nodes.push(node) - 1;
    if (nodes.length > maxNodes) throw ValidationError.at(["children"], `a flow holds at most ${maxNodes} jobs (MAX_FLOW_NODES)`);
    const children = node.input.children;
    // Pushed in reverse, so they come off the stack in order.
    for (let i = (children?.length ?? 0) - 1; i >= 0; i--) {
      stack.push({
        input: children?.[i] as FlowNodeInput,
        path: [...node.path, "children", String(i)],
        parent: index,
        depth: node.depth + 1,
      });
    }
  }
  return nodes;
}

function issuesOf(error: z.ZodError, prefix: string[]): ValidationIssue[] {
  return error.issues.map((i) => ({ path: [...prefix, ...i.path.map(String)], message: i.message }));
}

/** A job's meta: the caller's, its tenant, its type's secret paths (so every view of it masks them). */
function jobMeta(meta: JobMeta, tenant: string | null, secret: readonly string[]): JobMeta {
  return { ...meta, ...(tenant ? { tenant } : {}), ...(secret.length > 0 ? { secret } : {}) };
}

/** The payload as stored in BullMQ: our extra fields under META_KEY, when there are any. */
function withMeta(data: unknown, meta: JobMeta): unknown {
  return Object.keys(meta).length > 0 ? { ...(data as object), [META_KEY]: meta } : data;
}

/**
 * Every operation on jobs: the GraphQL layer and the tooling call this, never BullMQ directly.
 * Throws the errors of errors.ts for expected failures.
 */
export class JobService {
  private readonly registry: JobRegistry;
  private readonly queues: QueueSet;
  private readonly history: HistoryStore;
  private readonly options: JobServiceOptions;
  private readonly durable: DurableEnqueue;

  constructor(
    registry: JobRegistry,
    queues: QueueSet,
    history: HistoryStore,
    log: Logger,
    options: JobServiceOptions,
    records: DurableRecords,
  ) {
    this.registry = registry;
    this.queues = queues;
    this.history = history;
    this.options = options;
    this.durable = new DurableEnqueue(queues.ids, history, records, log);
  }

  /** Validates one input; returns the BullMQ options or throws a ValidationError / NotFoundError. */
  private validate(input: EnqueueInput): { data: unknown; opts: JobsOptions; tenant: string | null; secret: readonly string[] } {
    const queue = this.queues.get(input.queue);
    if (!queue) throw new NotFoundError(`No queue named "${input.queue}"`);
    const def = this.registry.get(input.queue, input.name);
    if (!def) {
      const known = this.registry
        .ofQueue(input.queue)
        .map((d) => d.name)
        .join(", ");
      throw ValidationError.at(["name"], `unknown job name "${input.name}" in queue "${input.queue}" (known: ${known})`);
    }
    // Depth and NUL first: JSON.stringify below recurses, and PostgreSQL refuses NUL.
    const unstorable = inputProblem(input.data ?? null, this.options.maxDataDepth ?? DEFAULT_MAX_DATA_DEPTH, ["data"]);
    if (unstorable) throw ValidationError.of([unstorable]);
    if (typeof input.jobId === "string" && input.jobId.includes("\u0000")) {
      throw ValidationError.at(["jobId"], "contains a NUL character (\\u0000), which cannot be stored");
    }
    const issues: ValidationIssue[] = [];
    const size = Buffer.byteLength(JSON.stringify(input.data ?? null));
    if (size > this.options.maxPayloadBytes) {
      issues.push({ path: ["data"], message: `is ${size} bytes, more than the limit of ${this.options.maxPayloadBytes}` });
    }
    const parsed = def.schema.safeParse(input.data);
    if (!parsed.success) issues.push(...issuesOf(parsed.error, ["data"]));
    const opts = optionsSchema.safeParse(input);
    if (!opts.success) issues.push(...issuesOf(opts.error, []));
    if (issues.length > 0 || !parsed.success || !opts.success) throw ValidationError.of(issues);

    const o = opts.data;
    const backoff = o.backoff ?? def.defaults.backoff;
    return {
      data: parsed.data,
      tenant: o.tenant ?? null,
      secret: def.secret,
      opts: {
        jobId: o.jobId ?? undefined,
        priority: o.priority ?? undefined,
        delay: o.delayMs ?? undefined,
        attempts: o.attempts ?? def.defaults.attempts ?? 1,
        backoff: backoff ? { type: backoff.type.toLowerCase() as "fixed" | "exponential", delay: backoff.delayMs } : undefined,
      },
    };
  }

  /**
   * Enqueues one job; with a `jobId` that is already known, returns that job unchanged (a job the
   * caller may not see: a ValidationError, its id is taken). The job's history row is committed
   * before the job is added to Redis (durable enqueue): when it cannot be, this throws an
   * UnavailableError and nothing is enqueued.
   */
  async enqueue(input: EnqueueInput, meta: JobMeta = {}, visible: JobVisibility = () => true): Promise<JobView> {
    const { data, opts, tenant, secret } = this.validate(input);
    if (opts.jobId) {
      const existing = await this.known(input.queue, opts.jobId);
      if (existing && !visible(existing)) throw jobIdTaken(["jobId"]);
      if (existing) return existing;
    }
    const queue = this.queues.get(input.queue);
    if (!queue) throw new NotFoundError(`No queue named "${input.queue}"`);
    const full = jobMeta(meta, tenant, secret);
    const id = opts.jobId ?? ((await this.durable.reserve(input.queue, 1))[0] as string);
    // The history row holds the data with the job type's secret paths masked; Redis the real values.
    const pending = pendingView(input.queue, id, input.name, redact(data, secret), full, opts, new Date());
    const writes = [{ view: pending, delayMs: opts.delay ?? 0, backoff: backoffOf(opts), fresh: !opts.jobId }];
    const afterRecord = this.options.enqueueAck !== "redis";
    if (afterRecord) await this.durable.record(writes);
    await this.keepSecrets([{ queue: input.queue, id: pending.id, name: input.name, data }], afterRecord ? [pending] : []);
    const payload = withMeta(data, full);
    let job: Awaited<ReturnType<typeof queue.add>>;
    try {
      // pending.id, not id: record() gives a job a new id when history already held the counter's.
      job = await queue.add(input.name, payload, { ...opts, jobId: pending.id, timestamp: pending.createdAt.getTime() });
    } catch (err) {
      if (afterRecord) await this.durable.forget([pending]);
      await this.options.secrets?.forget(input.queue, [pending.id]).catch(() => {});
      throw err;
    }
    if (!afterRecord) this.durable.recordLater(writes);
    if (opts.jobId) {
      // A concurrent enqueue with the same id may have won: BullMQ then returns our local copy, not
      // the stored job, so read back what Redis holds.
      const stored = await this.getLive(input.queue, opts.jobId);
      if (stored) return stored;
    }
    return viewFromBull(job, pending.state);
  }

  /**
   * Enqueues many jobs, all or nothing: every input is validated first (each issue's path starts
   * with the input's index) and nothing is enqueued if any is invalid; then every new job's history
   * row is committed (else an UnavailableError, nothing enqueued) and one `addBulk` per queue adds them.
   * Inputs whose `jobId` is already known return that job, as `enqueue` does.
   */
  async enqueueMany(inputs: EnqueueInput[], meta: JobMeta = {}, visible: JobVisibility = () => true): Promise<JobView[]> {
    if (inputs.length > this.options.maxBulkEnqueue) {
      throw ValidationError.at(["inputs"], `at most ${this.options.maxBulkEnqueue} inputs per call (got ${inputs.length})`);
    }
    const validated: {
      index: number;
      input: EnqueueInput;
      data: unknown;
      opts: JobsOptions;
      tenant: string | null;
      secret: readonly string[];
    }[] = [];
    const issues: ValidationIssue[] = [];
    for (const [index, input] of inputs.entries()) {
      try {
        validated.push({ index, input, ...this.validate(input) });
      } catch (err) {
        if (err instanceof ValidationError) issues.push(...err.issues.map((i) => ({ ...i, path: [String(index), ...i.path] })));
        else if (err instanceof NotFoundError) throw new NotFoundError(`inputs[${index}]: ${err.message}`);
        else throw err;
      }
    }
    const seen = new Set<string>();
    for (const v of validated) {
      if (!v.opts.jobId) continue;
      const key = `${v.input.queue}\u0000${v.opts.jobId}`;
      if (seen.has(key)) issues.push({ path: [String(v.index), "jobId"], message: "appears twice in this call" });
      seen.add(key);
    }
    if (issues.length > 0) throw ValidationError.of(issues);

    // Known ids answer with the stored job; everything else goes out in one addBulk per queue.
    const anyJobId = validated.some((v) => v.opts.jobId);
    const results: (JobView | null)[] = anyJobId
      ? await Promise.all(validated.map((v) => (v.opts.jobId ? this.known(v.input.queue, v.opts.jobId) : null)))
      : validated.map(() => null);
    const hidden = results.flatMap((job, i) => (job && !visible(job) ? [String(validated[i]?.index)] : []));
    if (hidden.length > 0) throw ValidationError.of(hidden.map((index) => jobIdTaken([index, "jobId"]).issues[0] as ValidationIssue));
    const byQueue = new Map<string, number[]>();
    for (const [i, v] of validated.entries()) {
      if (results[i]) continue;
      const indexes = byQueue.get(v.input.queue);
      if (indexes) indexes.push(i);
      else byQueue.set(v.input.queue, [i]);
    }
    // Ids first (one reservation per queue), then every row in one group commit, then the adds.
    const createdAt = new Date();
    const pending: JobView[] = [];
    const metas: JobMeta[] = [];
    const writes: EnqueueWrite[] = [];
    for (const [queueName, indexes] of byQueue) {
      if (!this.queues.get(queueName)) throw new NotFoundError(`No queue named "${queueName}"`);
      let freshCount = 0;
      for (const i of indexes) if (!validated[i]?.opts.jobId) freshCount++;
      const fresh = await this.durable.reserve(queueName, freshCount);
      let next = 0;
      for (const i of indexes) {
        const v = validated[i] as (typeof validated)[number];
        const id = v.opts.jobId ?? (fresh[next++] as string);
        const full = jobMeta(meta, v.tenant, v.secret);
        metas[i] = full;
        const view = pendingView(queueName, id, v.input.name, redact(v.data, v.secret), full, v.opts, createdAt);
        pending[i] = view;
        writes.push({ view, delayMs: v.opts.delay ?? 0, backoff: backoffOf(v.opts), fresh: !v.opts.jobId });
      }
    }
    const timestamp = createdAt.getTime();
    const bulkOf = (indexes: number[]) =>
      indexes.map((i) => {
        const v = validated[i] as (typeof validated)[number];
        const view = pending[i] as JobView;
        return { name: v.input.name, data: withMeta(v.data, metas[i] as JobMeta), opts: { ...v.opts, jobId: view.id, timestamp } };
      });
    const afterRecord = this.options.enqueueAck !== "redis";
    let prepared: Map<string, PreparedBulk> | null = null;
    if (afterRecord) {
      const recording = this.durable.record(writes);
      recording.catch(() => undefined); // awaited below
      // The adds are built while the rows commit (nothing is sent to Redis before `send()`), so only
      // the sending is left after the commit. Building one that fails leaves it to addBulk below.
      const ids = writes.map((w) => w.view.id);
      prepared = await this.prepareAdds(byQueue, bulkOf).catch(() => null);
      await recording;
      // record() gives a job a new id when history already held the counter's: built with the old one.
      if (writes.some((w, k) => w.view.id !== ids[k])) prepared = null;
    }
    // (Without PAYLOAD_ENCRYPTION_KEYS there is nothing to keep: the 1,000 entries are not built.)
    if (this.options.secrets) {
      await this.keepSecrets(
        validated.flatMap((v, i) => {
          const view = pending[i];
          return view ? [{ queue: view.queue, id: view.id, name: v.input.name, data: v.data }] : [];
        }),
        afterRecord ? writes.map((w) => w.view) : [],
      );
    }
    const notAdded = new Set(writes.map((w) => w.view));
    try {
      for (const [queueName, indexes] of byQueue) {
        const queue = this.queues.get(queueName);
        if (!queue) throw new NotFoundError(`No queue named "${queueName}"`);
        const ready = prepared?.get(queueName);
        const added = ready ? await ready.send() : await queue.addBulk(bulkOf(indexes));
        for (const i of indexes) notAdded.delete(pending[i] as JobView);
        // With a jobId a concurrent call may have won: read back what Redis holds (all at once).
        const stored = anyJobId
          ? await Promise.all(
              indexes.map((i) => {
                const jobId = validated[i]?.opts.jobId;
                return jobId ? this.getLive(queueName, jobId) : null;
              }),
            )
          : [];
        for (const [k, job] of added.entries()) {
          const i = indexes[k] as number;
          results[i] = stored[k] ?? viewFromBull(job, (pending[i] as JobView).state);
        }
      }
    } catch (err) {
      if (afterRecord) await this.durable.forget([...notAdded]);
      else this.durable.recordLater(writes.filter((w) => !notAdded.has(w.view)));
      for (const view of notAdded) await this.options.secrets?.forget(view.queue, [view.id]).catch(() => {});
      throw err;
    }
    if (!afterRecord) this.durable.recordLater(writes);
    return results as JobView[];
  }

  /** Each queue's bulk add of `enqueueMany`, built and not sent (QueueSet.prepareBulk). */
  private async prepareAdds(
    byQueue: Map<string, number[]>,
    bulkOf: (indexes: number[]) => { name: string; data: unknown; opts: JobsOptions }[],
  ): Promise<Map<string, PreparedBulk>> {
    const prepared = new Map<string, PreparedBulk>();
    for (const [queueName, indexes] of byQueue) {
      const bulk = await this.queues.prepareBulk(queueName, bulkOf(indexes));
      if (bulk) prepared.set(queueName, bulk);
    }
    return prepared;
  }

  /**
   * Stores the jobs' secret values encrypted (PayloadSecrets), before the jobs reach Redis, so a
   * job recovered from its row has them. When that fails nothing is enqueued: `recorded` rows are
   * taken back and this throws an UnavailableError.
   */
  private async keepSecrets(jobs: SecretJob[], recorded: JobView[]): Promise<void> {
    if (!this.options.secrets) return;
    try {
      await this.options.secrets.keep(jobs);
    } catch (err) {
      if (recorded.length > 0) await this.durable.forget(recorded);
      throw new UnavailableError("The job's secret fields could not be stored (PostgreSQL), so nothing was enqueued; retry later.", {
        cause: err,
      });
    }
  }

  /** What keeps secret payload fields for replays (none when PAYLOAD_ENCRYPTION_KEYS is unset: then they are only masked). */
  get secrets(): PayloadSecrets | undefined {
    return this.options.secrets;
  }

  /**
   * Enqueues a flow (BullMQ's FlowProducer): a parent that waits (WAITING_CHILDREN) until its
   * children have finished, nested, across any queues. All or nothing: every node is validated like
   * `enqueue` (each issue's path leads into the tree: `["children", "2", "data", "steps"]`) and
   * nothing is enqueued if one is invalid; the tree may hold at most `maxFlowNodes` jobs on
   * `maxFlowDepth` levels. Every node carries the root's tenant. Durable like `enqueue`: every
   * node's history row (children with their parent) is committed first, then the whole tree is
   * added in one atomic FlowProducer call. A root `jobId` that is already known returns that job
   * and adds nothing; a known `jobId` on a child is a ValidationError (a job cannot join a new parent).
   * Returns every node's job, in pre-order (the root first).
   */
  async enqueueFlow(root: FlowNodeInput, meta: JobMeta = {}, visible: JobVisibility = () => true): Promise<JobView[]> {
    const nodes = flatten(root, this.options.maxFlowNodes ?? 1000, this.options.maxFlowDepth ?? 10);
    const issues: ValidationIssue[] = [];
    const validated: ({ data: unknown; opts: JobsOptions; tenant: string | null; secret: readonly string[] } | null)[] = [];
    for (const node of nodes) {
      try {
        validated.push(this.validate(node.input));
      } catch (err) {
        validated.push(null);
        if (err instanceof ValidationError) issues.push(...err.issues.map((i) => ({ ...i, path: [...node.path, ...i.path] })));
        else if (err instanceof NotFoundError && node.path.length > 0) throw new NotFoundError(`${node.path.join(".")}: ${err.message}`);
        else throw err;
      }
      if (node.input.children && node.input.children.length === 0) {
        issues.push({ path: [...node.path, "children"], message: "must list at least one child (omit it for a job without children)" });
      }
      const policies = PARENT_POLICIES.filter((p) => node.input[p] === true);
      if (node.parent === null && policies.length > 0) {
        issues.push({
          path: [policies[0] as string],
          message: "applies to a child (what its failure does to its parent); the root has no parent",
        });
      } else if (policies.length > 1) {
        issues.push({
          path: [...node.path, policies[1] as string],
          message: `give at most one of ${PARENT_POLICIES.join(", ")} (${policies[0]} is set)`,
        });
      }
    }
    const tenant = validated[0]?.tenant ?? null;
    const seen = new Set<string>();
    for (const [i, node] of nodes.entries()) {
      const v = validated[i];
      if (!v) continue;
      if (i > 0 && v.tenant !== null && v.tenant !== tenant) {
        issues.push({ path: [...node.path, "tenant"], message: "every job of a flow has the root's tenant (omit it on children)" });
      }
      if (!v.opts.jobId) continue;
      const key = `${node.input.queue}\u0000${v.opts.jobId}`;
      if (seen.has(key)) issues.push({ path: [...node.path, "jobId"], message: "appears twice in this flow" });
      seen.add(key);
    }
    issues.push(...(await this.crossSlotIssues(nodes, validated)));
    if (issues.length > 0) throw ValidationError.of(issues);
    const valid = validated as NonNullable<(typeof validated)[number]>[];

    // Idempotency on the root's jobId: a known root is the flow already enqueued.
    const rootId = valid[0]?.opts.jobId;
    if (rootId) {
      const existing = await this.known(root.queue, rootId);
      if (existing && !visible(existing)) throw jobIdTaken(["jobId"]);
      if (existing) return [existing];
    }
    const taken = await Promise.all(
      nodes.map((node, i) => (i > 0 && valid[i]?.opts.jobId ? this.known(node.input.queue, valid[i]?.opts.jobId as string) : null)),
    );
    const takenIssues = taken.flatMap((job, i) =>
      job ? [{ path: [...(nodes[i] as FlowNode).path, "jobId"], message: "is already used by another job; choose another" }] : [],
    );
    if (takenIssues.length > 0) throw ValidationError.of(takenIssues);

    // Ids first (one reservation per queue), then every row in one group commit, then one atomic add.
    const fresh = new Map<string, string[]>();
    for (const [i, node] of nodes.entries()) {
      if (!valid[i]?.opts.jobId) fresh.set(node.input.queue, [...(fresh.get(node.input.queue) ?? []), ""]);
    }
    for (const [queueName, slots] of fresh) {
      if (!this.queues.get(queueName)) throw new NotFoundError(`No queue named "${queueName}"`);
      fresh.set(queueName, await this.durable.reserve(queueName, slots.length));
    }
    const createdAt = new Date();
    const views: JobView[] = [];
    const writes: EnqueueWrite[] = [];
    for (const [i, node] of nodes.entries()) {
      const v = valid[i] as (typeof valid)[number];
      const id = v.opts.jobId ?? (fresh.get(node.input.queue)?.shift() as string);
      const full = jobMeta(nodeMeta(meta, node.input), tenant, v.secret);
      const parent = node.parent === null ? null : (views[node.parent] as JobView);
      const view = pendingView(node.input.queue, id, node.input.name, redact(v.data, v.secret), full, v.opts, createdAt, {
        parent,
        hasChildren: (node.input.children?.length ?? 0) > 0,
      });
      views.push(view);
      const policy = PARENT_POLICIES.find((p) => node.input[p] === true) ?? null;
      writes.push({ view, delayMs: v.opts.delay ?? 0, backoff: backoffOf(v.opts), parentPolicy: policy, fresh: !v.opts.jobId });
    }
    const afterRecord = this.options.enqueueAck !== "redis";
    // Secret payload fields kept encrypted for replays and recovery, as every enqueue does.
    const secretJobs = () =>
      nodes.map((node, i) => ({ queue: node.input.queue, id: (views[i] as JobView).id, name: node.input.name, data: valid[i]?.data }));
    const childrenOf = nodes.map((): number[] => []);
    for (const [k, n] of nodes.entries()) if (n.parent !== null) childrenOf[n.parent]?.push(k);
    // Recursion as deep as the tree, which flatten() bounded. Reads each node's id when called.
    const flowNode = (i: number): FlowJob => {
      const node = nodes[i] as FlowNode;
      const v = valid[i] as (typeof valid)[number];
      const view = views[i] as JobView;
      const policy = PARENT_POLICIES.find((p) => node.input[p] === true);
      const children = (childrenOf[i] ?? []).map(flowNode);
      return {
        name: node.input.name,
        queueName: node.input.queue,
        data: withMeta(v.data, jobMeta(nodeMeta(meta, node.input), tenant, v.secret)),
        opts: { ...v.opts, jobId: view.id, timestamp: createdAt.getTime(), ...(policy ? { [policy]: true } : {}) },
        ...(children.length > 0 ? { children } : {}),
      };
    };

    // What must hold before Redis gets anything of the flow: every row committed (durable enqueue)
    // and the secret fields stored. BullMQ builds the flow's transaction meanwhile (its share of the
    // CPU, ~60 µs a node, overlaps the commit) and sends it only once this resolves.
    const issued = views.map((view) => view.id);
    const ready = (async (): Promise<boolean> => {
      if (afterRecord) await this.durable.record(writes);
      // record() gives a job a new id when history already held the counter's (a Redis that lost
      // its last writes): the transaction built meanwhile names the old ones, so it is never sent.
      const moved = views.some((view, i) => view.id !== issued[i]);
      if (!moved) await this.keepSecrets(secretJobs(), afterRecord ? views : []);
      return moved;
    })();
    const gate = ready.then((moved) => {
      if (moved) throw new Error("flow ids moved; the transaction is rebuilt");
    });
    // Observed below through `ready` (and by the transaction when BullMQ gets that far).
    gate.catch(() => undefined);
    // From the next turn of the event loop: the rows' statement is on its way to PostgreSQL by then.
    const tree = flowNode(0);
    const adding = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.queues.addFlow(tree, gate));
    const [recorded, added] = await Promise.allSettled([ready, adding]);
    // Nothing reached Redis: the transaction waits for `ready` (a failed row or secret write cleans up after itself).
    if (recorded.status === "rejected") throw recorded.reason;
    if (recorded.value) {
      // The children's rows of a job that got a new id name the old one: they are written again,
      // and the flow added with the new ids.
      const moved = nodes.flatMap((node, i) => {
        const view = views[i] as JobView;
        const parent = node.parent === null ? null : (views[node.parent] as JobView);
        return parent && view.parentId !== parent.id ? [Object.assign(view, { parentId: parent.id })] : [];
      });
      await Promise.all(moved.map((view) => this.history.upsert(view)));
      await this.keepSecrets(secretJobs(), afterRecord ? views : []);
      try {
        await this.queues.addFlow(flowNode(0));
      } catch (err) {
        if (afterRecord) await this.durable.forget(views);
        for (const view of views) await this.options.secrets?.forget(view.queue, [view.id]).catch(() => {});
        throw err;
      }
    } else if (added.status === "rejected") {
      if (afterRecord) await this.durable.forget(views);
      for (const view of views) await this.options.secrets?.forget(view.queue, [view.id]).catch(() => {});
      throw added.reason;
    }
    if (!afterRecord) this.durable.recordLater(writes);
    return views;
  }

  /**
   * On a Redis Cluster, an issue for each node whose queue's keys are in another hash slot than the
   * root's: BullMQ adds a whole flow in one MULTI (parent and children, and each child's entry in
   * its parent's dependencies), which a cluster refuses (CROSSSLOT) when its keys span slots, and
   * with REDIS_KEY_LAYOUT=per-queue every queue has a slot of its own. Checked before anything is
   * written, so such a flow is a ValidationError naming the node, never a raw CROSSSLOT. None on one
   * Redis, or when every queue shares one slot (REDIS_KEY_LAYOUT=single).
   */
  private async crossSlotIssues(nodes: readonly FlowNode[], validated: readonly (object | null)[]): Promise<ValidationIssue[]> {
    const root = nodes[0];
    const queues = [...new Set(nodes.filter((_, i) => validated[i]).map((n) => n.input.queue))];
    if (!root || !validated[0] || queues.length < 2) return [];
    const slots = new Map(await Promise.all(queues.map(async (q) => [q, await this.queues.slotOf(q)] as const)));
    const rootSlot = slots.get(root.input.queue);
    if (rootSlot === null || rootSlot === undefined) return [];
    return nodes.flatMap((node, i) =>
      validated[i] && slots.get(node.input.queue) !== rootSlot
        ? [
            {
              path: [...node.path, "queue"],
              message:
                `queue "${node.input.queue}" keeps its keys in another Redis Cluster hash slot than the root's queue "${root.input.queue}" ` +
                "(REDIS_KEY_LAYOUT=per-queue gives every queue a slot of its own), and a flow is added in one Redis transaction, " +
                "which a cluster refuses across slots: put every job of the flow in the root's queue, " +
                "or run every API and worker with REDIS_KEY_LAYOUT=single (all queues in one slot; README: Key layout)",
            },
          ]
        : [],
    );
  }

  /** The job as Redis holds it now, or null when Redis no longer has it. */
  async getLive(queueName: string, id: string): Promise<JobView | null> {
    const queue = this.queues.get(queueName);
    if (!queue) return null;
    // The hash and the state in one round trip: both commands go out together on the one connection,
    // and Redis runs them in that order (the hash is read first, as before).
    // The state through jobStateIfExists: BullMQ's own walks the whole wait list for a job Redis no longer holds.
    let [job, bullState] = await Promise.all([queue.getJob(id), jobStateIfExists(this.queues.connection, queue, id)]);
    if (!job) return null;
    // The job finished between the two reads: read it again so its fields match its state.
    if ((bullState === "completed" || bullState === "failed") && !job.finishedOn) job = (await queue.getJob(id)) ?? job;
    const state = fromBullState(bullState, bullState === "failed" && (await this.queues.isCancelled(job)));
    return state ? viewFromBull(job, state) : null;
  }

  /** `getJob` for an enqueue's idempotency check: history that cannot be read is an UnavailableError. */
  private async known(queue: string, id: string): Promise<JobView | null> {
    const live = await this.getLive(queue, id);
    if (live) return live;
    try {
      return await this.history.get(queue, id);
    } catch (err) {
      throw new UnavailableError(
        `Job history (PostgreSQL) could not be read to check whether job "${id}" already exists, so nothing was enqueued; retry later.`,
        { cause: err },
      );
    }
  }

  /** Live state from Redis when the job is there, else history; null when unknown. */
  async getJob(queue: string, id: string): Promise<JobView | null> {
    return (await this.getLive(queue, id)) ?? (await this.history.get(queue, id));
  }

  /**
   * Lines the processor wrote with `job.log`, oldest first, at most `limit`: from Redis while it holds
   * them, else the ones history kept (the first 1,000 lines / 64 KiB of the job).
   */
  async getLogs(queueName: string, id: string, limit = 1000): Promise<string[]> {
    const queue = this.queues.get(queueName);
    if (!queue) return [];
    const { logs } = await queue.getJobLogs(id, 0, limit - 1, true);
    if (logs.length > 0 || !this.options.logs) return logs;
    return this.options.logs.list(queueName, id, limit);
  }

  /** The job type's secret payload paths (none for an unknown type). */
  secretPaths(queue: string, name: string): readonly string[] {
    return this.registry.get(queue, name)?.secret ?? [];
  }

  /** A flow parent's children counts: BullMQ's while Redis holds the parent, else history's. */
  async childrenCounts(queueName: string, id: string): Promise<ChildrenCounts> {
    const queue = this.queues.get(queueName);
    return (queue ? await liveChildrenCounts(queue, id) : null) ?? (await this.history.childrenCounts(queueName, id));
  }

  /** A flow parent's completed children's results keyed `<queue>:<id>`: from Redis while it holds the parent, else history. */
  async childrenValues(queueName: string, id: string): Promise<Record<string, unknown>> {
    const queue = this.queues.get(queueName);
    return (queue ? await liveChildrenValues(queue, id) : null) ?? (await this.history.childrenResults(queueName, id));
  }

  /** `data` as anyone but the processor may see it: the job type's secret paths masked. */
  redacted(queue: string, name: string, data: unknown): unknown {
    return redact(data, this.registry.get(queue, name)?.secret);
  }
}
