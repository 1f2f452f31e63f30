import { type DocumentNode, GraphQLError, visit } from "graphql";
import type { Plugin } from "graphql-yoga";
import { inputProblem } from "../jobs/input-checks.ts";

/** The error for a refused input: code VALIDATION (as a ValidationError outside a union), HTTP 400. */
function invalidInput(path: string[], message: string): GraphQLError {
  const where = path.join(".") || "(root)";
  return new GraphQLError(`Invalid input: ${where}: ${message}`, {
    extensions: { code: "VALIDATION", issues: [{ path, message }], http: { status: 400, spec: false } },
  });
}

/** NUL in a string literal of the document (literals are already bounded in depth by the parser's nesting check). */
function literalWithNul(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    StringValue(node) {
      if (node.value.includes("\u0000")) found = true;
    },
  });
  return found;
}

/**
 * The first problem of an operation's inputs: variables nested deeper than `maxDepth` or holding a
 * NUL character anywhere, or a NUL in a literal. Such values would reach PostgreSQL (which stores
 * NUL in neither text nor jsonb, failing whole statements) or recursive code (a stack overflow).
 */
export function operationInputProblem(document: DocumentNode, variables: unknown, maxDepth: number): GraphQLError | null {
  // Variables sit one level down (their names) and JSON inputs sit inside an input object or two.
  const issue = inputProblem(variables ?? null, maxDepth + 4, ["variables"], maxDepth);
  if (issue) return invalidInput(issue.path, issue.message);
  if (literalWithNul(document)) return invalidInput([], "a string contains a NUL character (\\u0000), which cannot be stored");
  return null;
}

/**
 * Refuses, before execution, operations whose inputs no resolver should see (see
 * operationInputProblem): one check for every field, so no path to PostgreSQL or to a recursive
 * function can be forgotten. Subscriptions over SSE pass here too; graphql-ws calls
 * `operationInputProblem` itself.
 */
export function inputGuardPlugin(maxDataDepth: number): Plugin {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = operationInputProblem(args.document, args.variableValues, maxDataDepth);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = operationInputProblem(args.document, args.variableValues, maxDataDepth);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

/** GET parameters that Yoga would JSON.parse unguarded (a SyntaxError there was an HTTP 500). */
export function badGetParameter(url: URL): string | null {
  for (const name of ["variables", "extensions"]) {
    const raw = url.searchParams.get(name);
    if (raw == null || raw === "") continue;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) return `"${name}" must be a JSON object`;
    } catch {
      return `"${name}" is not valid JSON`;
    }
  }
  return null;
}
