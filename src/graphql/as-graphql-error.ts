import { GraphQLError } from "graphql";
import { NotFoundError, ValidationError } from "../jobs/errors.ts";

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
    throw err;
  }
}
