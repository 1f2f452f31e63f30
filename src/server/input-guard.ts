import { type DocumentNode, GraphQLError, visit } from "graphql";
import type { Plugin } from "graphql-yoga";
import { inputProblem } from "../jobs/input-checks.ts";
import { notSpecHttp } from "./query-limits.ts";

/** The error for a refused input: code VALIDATION (as a ValidationError outside a union), HTTP 400. */
function invalidInput(path: string[], message: string): GraphQLError {
  const where = path.join(".") || "(root)";
  return new GraphQLError(`Invalid input: ${where}: ${message}`, {
    extensions: { code: "VALIDATION", issues: [{ path, message }], http: { status: 400, spec: false } },
  });
}

/** Documents already looked at: parsed documents are cached and reused, so each is walked once. */
const nulInLiterals = new WeakMap<DocumentNode, boolean>();

/** NUL in a string literal of the document (literals are already bounded in depth by the parser's nesting check). */
function literalWithNul(document: DocumentNode): boolean {
  const known = nulInLiterals.get(document);
  if (known !== undefined) return known;
  let found = false;
  visit(document, {
    StringValue(node) {
      if (node.value.includes("\u0000")) found = true;
    },
  });
  nulInLiterals.set(document, found);
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

/** Longest error message sent: an echo of a client's 100 KB name is cut here. */
export const MAX_ERROR_MESSAGE_CHARS = 500;

/**
 * The same error with its message cut to MAX_ERROR_MESSAGE_CHARS and without
 * `extensions.originalError` (Yoga puts the JSON parser's own error there, whose message quotes the
 * body it could not parse: a 2 MB body came back as a 2 MB answer).
 */
export function boundedError(error: GraphQLError): GraphQLError {
  const { originalError: dropped, ...extensions } = error.extensions as Record<string, unknown>;
  const long = error.message.length > MAX_ERROR_MESSAGE_CHARS;
  if (!long && dropped === undefined) return error;
  // Yoga answers a request error with an originalError 4xx even for `Accept: application/json`;
  // without it, keep that status.
  const http = extensions.http as { status?: number; headers?: Record<string, string> } | undefined;
  if (dropped !== undefined && http?.status)
    extensions.http = { ...notSpecHttp(http.status), ...(http.headers ? { headers: http.headers } : {}) };
  return new GraphQLError(long ? `${error.message.slice(0, MAX_ERROR_MESSAGE_CHARS)}... (cut)` : error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions,
  });
}

/** Bounds every answer's errors (see boundedError), whatever produced them. */
export function boundedErrorsPlugin(): Plugin {
  const bound = <T extends { errors?: readonly unknown[] | undefined }>(result: T): T =>
    result.errors?.length ? { ...result, errors: result.errors.map((e) => (e instanceof GraphQLError ? boundedError(e) : e)) } : result;
  return {
    onResultProcess({ result, setResult }) {
      if (Array.isArray(result)) setResult(result.map(bound));
      else if (!(Symbol.asyncIterator in (result as object))) setResult(bound(result as { errors?: readonly unknown[] }) as typeof result);
    },
  };
}
