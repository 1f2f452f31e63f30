import { GraphQLError } from "graphql";
import type { ApiKeyView } from "../../access/api-key-store.ts";
import { MAX_JOB_TOKEN_TTL_SECONDS } from "../../access/job-token.ts";
import { CREDENTIAL_KINDS, canSeeJob, hasScope, type Principal, SCOPES } from "../../access/principal.ts";
import { ForbiddenError, NotFoundError, ValidationError } from "../../jobs/errors.ts";
import type { JobView } from "../../jobs/job-view.ts";
import { builder, type Context } from "../builder.ts";
import { JobRef } from "./job.ts";

export const ScopeEnum = builder.enumType("Scope", { values: SCOPES });
const CredentialKindEnum = builder.enumType("CredentialKind", { values: CREDENTIAL_KINDS });

const ApiKeyRef = builder.objectRef<ApiKeyView>("ApiKey").implement({
  fields: (t) => ({
    id: t.exposeID("id"),
    name: t.exposeString("name", { description: "Recorded as OperatorAction.actor for what this key does" }),
    prefix: t.exposeString("prefix", { description: "The secret's first characters (jca_ and 8 more), to recognise it; never the secret" }),
    scopes: t.field({ type: [ScopeEnum], resolve: (k) => k.scopes }),
    tenant: t.exposeString("tenant", { nullable: true, description: "null: not bound to a tenant" }),
    queues: t.exposeStringList("queues", {
      nullable: true,
      description: "null: every queue; else the key sees and acts on these queues only",
    }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
    lastUsedAt: t.expose("lastUsedAt", { type: "DateTime", nullable: true, description: "May lag by up to a minute" }),
    revokedAt: t.expose("revokedAt", { type: "DateTime", nullable: true }),
  }),
});

const ViewerRef = builder.objectRef<Principal>("Viewer").implement({
  fields: (t) => ({
    kind: t.field({ type: CredentialKindEnum, resolve: (p) => p.kind }),
    actor: t.exposeString("actor", {
      description: 'Key name, "admin" for ADMIN_API_KEY, "anonymous" where auth is open, "job-token" for a job token',
    }),
    scopes: t.field({ type: [ScopeEnum], resolve: (p) => [...p.scopes] }),
    tenant: t.exposeString("tenant", { nullable: true }),
    queues: t.field({
      type: ["String"],
      nullable: true,
      description: "null: every queue (a job token: its job's queue)",
      resolve: (p) => (p.queues ? [...p.queues] : null),
    }),
  }),
});

export const JobTokenRef = builder.objectRef<{ token: string; expiresAt: Date }>("JobToken").implement({
  description: "A short-lived signed credential for one job: Bearer value on HTTP/SSE or in connection_init",
  fields: (t) => ({
    token: t.exposeString("token"),
    expiresAt: t.expose("expiresAt", { type: "DateTime" }),
  }),
});

builder.queryFields((t) => ({
  viewer: t.field({
    type: ViewerRef,
    description: "Who the caller is: works for every valid credential, job tokens included",
    resolve: (_root, _args, ctx) => ctx.principal,
  }),
  apiKeys: t.field({
    type: [ApiKeyRef],
    description: "ADMIN scope; newest first, revoked ones included; never returns secrets",
    resolve: async (_root, _args, ctx) => (await ctx.access.listKeys()).filter((k) => canManageKey(ctx.principal, k)),
  }),
}));

const CreateApiKeyInput = builder.inputType("CreateApiKeyInput", {
  fields: (t) => ({
    name: t.string({ required: true }),
    scopes: t.field({ type: [ScopeEnum], required: true }),
    tenant: t.string(),
    queues: t.stringList(),
  }),
});

const CreateApiKeySuccess = builder.objectRef<{ apiKey: ApiKeyView; secret: string }>("CreateApiKeySuccess").implement({
  fields: (t) => ({
    apiKey: t.field({ type: ApiKeyRef, resolve: (r) => r.apiKey }),
    secret: t.exposeString("secret", { description: "Returned here once and never again" }),
  }),
});

const RevokeApiKeySuccess = builder.objectRef<{ apiKey: ApiKeyView }>("RevokeApiKeySuccess").implement({
  fields: (t) => ({ apiKey: t.field({ type: ApiKeyRef, resolve: (r) => r.apiKey }) }),
});

const CreateJobTokenSuccess = builder
  .objectRef<{ jobToken: { token: string; expiresAt: Date }; job: JobView }>("CreateJobTokenSuccess")
  .implement({
    fields: (t) => ({
      jobToken: t.field({ type: JobTokenRef, resolve: (r) => r.jobToken }),
      job: t.field({ type: JobRef, resolve: (r) => r.job }),
    }),
  });

/**
 * An ADMIN key bound to a tenant or limited to queues manages only keys within the same bounds: it
 * sees and revokes keys of its tenant (and of its queues), and the keys it creates are bound alike,
 * so it can never make a key that reaches further than itself.
 */
function canManageKey(p: Principal, key: ApiKeyView): boolean {
  if (p.tenant !== null && key.tenant !== p.tenant) return false;
  if (p.queues !== null && (key.queues === null || !key.queues.every((q) => p.queues?.includes(q)))) return false;
  return true;
}

function withinOwnReach<T extends { tenant?: string | null; queues?: string[] | null }>(p: Principal, input: T): T {
  if (p.tenant !== null) {
    if (input.tenant != null && input.tenant !== p.tenant)
      throw new ForbiddenError("tenant: a tenant-bound key creates keys of its own tenant only");
    input = { ...input, tenant: p.tenant };
  }
  if (p.queues !== null) {
    if (input.queues != null && !input.queues.every((q) => p.queues?.includes(q))) {
      throw new ForbiddenError("queues: a queue-limited key creates keys limited to its own queues");
    }
    input = { ...input, queues: input.queues ?? [...p.queues] };
  }
  return input;
}

/** ttlSeconds: 1 to 86,400, else the ValidationError at `path`. */
export function checkTtl(ttlSeconds: number | null | undefined, path: string[]): number {
  const ttl = ttlSeconds ?? 3600;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_JOB_TOKEN_TTL_SECONDS) {
    throw ValidationError.at(path, `must be an integer from 1 to ${MAX_JOB_TOKEN_TTL_SECONDS} (got ${ttl})`);
  }
  return ttl;
}

/** A job token for a job the caller has in hand (EnqueueJobSuccess.jobToken): null without READ. */
export function jobTokenFor(ctx: Context, job: JobView, ttlSeconds: number | null | undefined) {
  if (ctx.principal.kind === "JOB_TOKEN" || !hasScope(ctx.principal, "READ")) return null;
  let ttl: number;
  try {
    ttl = checkTtl(ttlSeconds, ["ttlSeconds"]);
  } catch (err) {
    throw new GraphQLError((err as Error).message, { extensions: { code: "VALIDATION" } });
  }
  return ctx.access.mintJobToken(ctx.principal, job, ttl);
}

builder.mutationFields((t) => ({
  createApiKey: t.field({
    type: CreateApiKeySuccess,
    description: "ADMIN. The secret is in the answer once and never again.",
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    errors: { types: [ValidationError, ForbiddenError], union: { name: "CreateApiKeyResult" } },
    resolve: (_root, { input }, ctx) => ctx.access.createKey(withinOwnReach(ctx.principal, input)),
  }),
  revokeApiKey: t.field({
    type: RevokeApiKeySuccess,
    description: "ADMIN; takes effect on every API instance within 5 s, closing the key's open subscriptions",
    args: { id: t.arg.id({ required: true }) },
    errors: { types: [NotFoundError, ForbiddenError], union: { name: "RevokeApiKeyResult" } },
    resolve: async (_root, args, ctx) => {
      const id = String(args.id);
      // By id only here (npm run keys takes names too); anything that is not a uuid names no key.
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) throw new NotFoundError(`No API key "${id}"`);
      const key = (await ctx.access.listKeys()).find((k) => k.id === id);
      if (!key || !canManageKey(ctx.principal, key)) throw new NotFoundError(`No API key "${id}"`);
      return { apiKey: await ctx.access.revokeKey(id) };
    },
  }),
  createJobToken: t.field({
    type: CreateJobTokenSuccess,
    description: "READ; the job must be visible to the caller. ttlSeconds: 1 to 86400.",
    args: { queue: t.arg.string({ required: true }), id: t.arg.id({ required: true }), ttlSeconds: t.arg.int({ defaultValue: 3600 }) },
    errors: { types: [NotFoundError, ValidationError, ForbiddenError], union: { name: "CreateJobTokenResult" } },
    resolve: async (_root, args, ctx) => {
      const ttl = checkTtl(args.ttlSeconds, ["ttlSeconds"]);
      const id = String(args.id);
      const job = await ctx.jobs.getJob(args.queue, id);
      if (!job || !canSeeJob(ctx.principal, job)) throw new NotFoundError(`No job "${id}" in queue "${args.queue}"`);
      return { jobToken: ctx.access.mintJobToken(ctx.principal, job, ttl), job };
    },
  }),
}));
