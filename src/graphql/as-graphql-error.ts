import { GraphQLError } from "graphql";
import { NotFoundError, UnavailableError, ValidationError } from "../jobs/errors.ts";

/**
 * For fields whose type has no error union (connections, subscriptions): runs `read` and turns the
 * domain's expected failures into GraphQL errors that keep their code (`extensions.code`) and, for a
 * ValidationError, its issues, so they are never masked as "Unexpected error.".
 */
export async function withGraphQLErrors<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof ValidationError) throw new GraphQLError(err.message, { extensions: { code: "VALIDATION", issues: err.issues } });
    if (err instanceof NotFoundError) throw new GraphQLError(err.message, { extensions: { code: "NOT_FOUND" } });
    if (err instanceof UnavailableError) throw new GraphQLError(err.message, { extensions: { code: "UNAVAILABLE" } });
    throw err;
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
    if (err instanceof UnavailableError) throw new GraphQLError(err.message, { extensions: { code: "UNAVAILABLE" } });
    throw err;
  }
}
