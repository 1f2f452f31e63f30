import { wrapOrThrow } from "@pothos/plugin-errors";
import {
  defaultFieldResolver,
  GraphQLError,
  type GraphQLField,
  type GraphQLFieldResolver,
  type GraphQLSchema,
  getNamedType,
  isObjectType,
  isUnionType,
} from "graphql";
import { hasScope, type Principal, type Scope } from "../access/principal.ts";
import { ForbiddenError } from "../jobs/errors.ts";
import type { Context } from "./builder.ts";

/**
 * The scope each root field needs (api-contract.graphql, "Access"): READ for queries and
 * subscriptions, CONTROL for mutations, unless listed here. `null`: any valid credential. A field
 * added later without an entry gets its root type's default, never nothing.
 */
const FIELD_SCOPES: Record<string, Scope | null> = {
  "Query.viewer": null,
  "Query.apiKeys": "ADMIN",
  "Mutation.enqueueJob": "ENQUEUE",
  "Mutation.enqueueJobs": "ENQUEUE",
  "Mutation.enqueueFlow": "ENQUEUE",
  "Mutation.createApiKey": "ADMIN",
  "Mutation.revokeApiKey": "ADMIN",
  "Mutation.createJobToken": "READ",
};
const ROOT_DEFAULTS: Record<string, Scope> = { Query: "READ", Subscription: "READ", Mutation: "CONTROL" };

/** What a job token may call: its job, its job's events, and viewer (each field checks the job itself). */
const JOB_TOKEN_FIELDS = new Set(["Query.job", "Query.viewer", "Subscription.jobEvents"]);

/** Operations that act on every tenant at once: a tenant-bound key may not call them. */
const ALL_TENANT_FIELDS = new Set(["Mutation.pauseQueue", "Mutation.resumeQueue"]);

/** The scope `Type.field` needs; null when any credential may call it. */
export function requiredScope(typeName: string, fieldName: string): Scope | null {
  const key = `${typeName}.${fieldName}`;
  if (key in FIELD_SCOPES) return FIELD_SCOPES[key] ?? null;
  return ROOT_DEFAULTS[typeName] ?? "ADMIN";
}

/** Why `principal` may not call `Type.field`, or null when it may. */
export function denial(principal: Principal, typeName: string, fieldName: string): string | null {
  const key = `${typeName}.${fieldName}`;
  if (principal.kind === "JOB_TOKEN") {
    return JOB_TOKEN_FIELDS.has(key) ? null : "A job token may only read its job (job, jobEvents) and viewer";
  }
  const scope = requiredScope(typeName, fieldName);
  if (scope && !hasScope(principal, scope)) return `${fieldName} needs the ${scope} scope`;
  if (principal.tenant !== null && ALL_TENANT_FIELDS.has(key)) {
    return `${fieldName} affects every tenant: it needs a key that is not bound to a tenant`;
  }
  return null;
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}

function forbiddenGraphQLError(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: "FORBIDDEN" } });
}

/**
 * Wraps every root field of `schema` (in place) with its access check, so no operation is reachable
 * without one, on every transport (HTTP, SSE and WebSocket all execute this schema). A refusal is the
 * ForbiddenError member of the field's result union when it has one, else a GraphQL error with
 * extensions.code FORBIDDEN.
 */
export function guardSchema(schema: GraphQLSchema): GraphQLSchema {
  for (const root of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
    if (!root) continue;
    for (const field of Object.values(root.getFields()) as GraphQLField<unknown, Context>[]) {
      const named = getNamedType(field.type);
      const inUnion = isUnionType(named) && named.getTypes().some((t) => isObjectType(t) && t.name === "ForbiddenError");
      const check = (ctx: Context) => denial(ctx.principal, root.name, field.name);
      if (root.name === "Subscription") {
        const subscribe = field.subscribe;
        if (!subscribe) continue;
        field.subscribe = async (source, args, ctx, info) => {
          const why = check(ctx);
          if (why) throw forbiddenGraphQLError(why);
          const events = await subscribe(source, args, ctx, info);
          // Ends (and closes a WebSocket with 4403) when the key is revoked, on any instance.
          return isAsyncIterable(events) ? ctx.access.sessions.track(ctx.principal, events, ctx.transport) : events;
        };
        continue;
      }
      const resolve = (field.resolve ?? defaultFieldResolver) as GraphQLFieldResolver<unknown, Context>;
      field.resolve = (source, args, ctx, info) => {
        const why = check(ctx);
        if (!why) return resolve(source, args, ctx, info);
        // As the errors plugin answers an error it caught (its union resolves only errors it wrapped).
        if (inUnion) return wrapOrThrow(new ForbiddenError(why), [ForbiddenError]);
        throw forbiddenGraphQLError(why);
      };
    }
  }
  return schema;
}
