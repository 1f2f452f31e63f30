import { GraphQLError } from "graphql";
import { maskError } from "graphql-yoga";
import {
  ForbiddenError,
  InvalidStateError,
  NotFoundError,
  SlowSubscriberError,
  UnavailableError,
  ValidationError,
} from "../jobs/errors.ts";

/** What clients see instead of an error that is not one of ours (Yoga's default message). */
export const MASKED_ERROR_MESSAGE = "Unexpected error.";

/**
 * The one mapping from the domain's expected failures (src/jobs/errors.ts) to GraphQL errors, for
 * every transport: HTTP, SSE and WebSocket. The error keeps its message and its code in
 * `extensions.code` (a ValidationError also its issues, an InvalidStateError the job's state).
 * `err` may be the domain error itself or a GraphQLError wrapping it (graphql-js wraps what a
 * resolver or a subscription's event stream throws). Null for anything else.
 */
export function asGraphQLError(err: unknown): GraphQLError | null {
  const located = err instanceof GraphQLError ? err : null;
  const original = located?.originalError ?? err;
  let extensions: Record<string, unknown>;
  if (original instanceof ValidationError) extensions = { code: original.code, issues: original.issues };
  else if (original instanceof InvalidStateError) extensions = { code: original.code, state: original.state };
  else if (
    original instanceof NotFoundError ||
    original instanceof ForbiddenError ||
    original instanceof SlowSubscriberError ||
    original instanceof UnavailableError
  )
    extensions = { code: original.code };
  else return null;
  return new GraphQLError(original.message, { nodes: located?.nodes, path: located?.path, extensions });
}

/**
 * Error masking for every transport (Yoga's `maskedErrors.maskError` for HTTP and SSE, and the
 * WebSocket server's): the domain's errors as `asGraphQLError` maps them, the rest as Yoga masks it.
 */
export function maskUnexpected(error: unknown, message: string = MASKED_ERROR_MESSAGE, isDev?: boolean): Error {
  return asGraphQLError(error) ?? maskError(error, message, isDev);
}

/**
 * For fields whose type has no error union (connections, subscriptions): runs `read` and turns the
 * domain's expected failures into GraphQL errors (`asGraphQLError`), so they are never masked as "Unexpected error.".
 */
export async function withGraphQLErrors<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    throw asGraphQLError(err) ?? err;
  }
}

/**
 * For mutations whose union lists their expected errors: only an UnavailableError (a store did not
 * answer, nothing was done) becomes a GraphQL error with `extensions.code = "UNAVAILABLE"` and its
 * message; the union's own errors pass through to the errors plugin.
 */
export async function withUnavailable<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof UnavailableError) throw asGraphQLError(err) ?? err;
    throw err;
  }
}
