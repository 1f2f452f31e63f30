// The two calls a client of this API needs, typed by the generated documents (src/client/generated):
// `request` for queries and mutations over HTTP, `watch` for subscriptions over graphql-ws. Plain
// `fetch` and graphql-ws' own client: runs in browsers, Node 22+, Deno and Bun alike.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { print } from "graphql";
import type { Client } from "graphql-ws/client";

/** A request the API refused: HTTP status (0 over WebSocket) and `extensions.code` of the first error. */
export class GraphQLRequestError extends Error {
  readonly status: number;
  readonly code: string | undefined;

  constructor(message: string, status: number, code: string | undefined) {
    super(message);
    this.name = "GraphQLRequestError";
    this.status = status;
    this.code = code;
  }
}

interface GraphQLErrorBody {
  message?: unknown;
  extensions?: { code?: unknown };
}

function requestError(errors: readonly GraphQLErrorBody[], status: number): GraphQLRequestError {
  const first = errors[0];
  const code = typeof first?.extensions?.code === "string" ? first.extensions.code : undefined;
  const message = errors.map((e) => (typeof e.message === "string" ? e.message : "GraphQL error")).join("; ");
  return new GraphQLRequestError(message || `HTTP ${status}`, status, code);
}

const printed = new WeakMap<object, string>();

/** The document's text, printed once per document. */
export function documentText(document: TypedDocumentNode<unknown, never>): string {
  let text = printed.get(document);
  if (text === undefined) {
    text = print(document);
    printed.set(document, text);
  }
  return text;
}

/**
 * The SHA-256 of the document's text that codegen embedded (`__meta__.hash`, client preset
 * `persistedDocuments`), as Apollo's `extensions.persistedQuery` carries it; undefined for a document
 * made elsewhere.
 */
export function documentHash(document: TypedDocumentNode<unknown, never>): string | undefined {
  const hash = (document as { __meta__?: { hash?: unknown } }).__meta__?.hash;
  return typeof hash === "string" ? hash.replace(/^sha256:/, "") : undefined;
}

/**
 * What goes on the wire for a document: its hash alone when it has one (works with
 * PERSISTED_OPERATIONS=only and allow alike), else its text.
 */
export function operationPayload(document: TypedDocumentNode<unknown, never>): { query: string; extensions?: Record<string, unknown> } {
  const hash = documentHash(document);
  if (hash === undefined) return { query: documentText(document) };
  // graphql-ws requires `query` to be a string: empty, the server takes the document from the hash.
  return { query: "", extensions: { persistedQuery: { version: 1, sha256Hash: hash } } };
}

export interface RequestOptions {
  /** The `Authorization` header: `Bearer <key>`; omit where auth is open. */
  authorization?: string | undefined;
  signal?: AbortSignal;
}

/**
 * Runs a query or mutation with HTTP POST and resolves with its `data`, typed by the document.
 * Rejects with a GraphQLRequestError when the API answers with errors (401 UNAUTHENTICATED, 429
 * RATE_LIMITED, a VALIDATION error on arguments...). Expected failures of mutations are not errors:
 * they come back as union members (`ValidationError`, `NotFoundError`) inside `data`.
 */
export async function request<Result, Variables>(
  endpoint: string,
  document: TypedDocumentNode<Result, Variables>,
  variables: Variables,
  options: RequestOptions = {},
): Promise<Result> {
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/graphql-response+json" };
  if (options.authorization) headers.authorization = options.authorization;
  const response = await fetch(endpoint, {
    method: "POST",
    headers,
    body: JSON.stringify({ ...operationPayload(document as TypedDocumentNode<unknown, never>), variables }),
    signal: options.signal,
  });
  const body = (await response.json().catch(() => ({}))) as { data?: Result | null; errors?: GraphQLErrorBody[] };
  if (body.errors && body.errors.length > 0) throw requestError(body.errors, response.status);
  if (!response.ok || body.data == null) throw new GraphQLRequestError(`HTTP ${response.status}`, response.status, undefined);
  return body.data;
}

/**
 * Follows a subscription over an open graphql-ws client: each event's `data`, typed by the document,
 * until the server completes it (jobEvents does after the job's terminal event). An error from the
 * server (`NOT_FOUND`, `FORBIDDEN`) rejects the iteration with a GraphQLRequestError.
 */
export async function* watch<Result, Variables extends Record<string, unknown>>(
  client: Client,
  document: TypedDocumentNode<Result, Variables>,
  variables: Variables,
): AsyncGenerator<Result> {
  const operation = operationPayload(document as TypedDocumentNode<unknown, never>);
  try {
    for await (const result of client.iterate<Result>({ ...operation, variables })) {
      if (result.errors && result.errors.length > 0) throw requestError(result.errors, 0);
      if (result.data) yield result.data;
    }
  } catch (err) {
    // graphql-ws rejects with the server's `error` message (an array of errors) or the socket's
    // CloseEvent; a closed socket with 4403 is the API refusing the credential.
    if (Array.isArray(err)) throw requestError(err as GraphQLErrorBody[], 0);
    const close = err as { code?: unknown; reason?: unknown } | null;
    if (close && typeof close.code === "number") {
      const code = close.code === 4403 ? "UNAUTHENTICATED" : undefined;
      throw new GraphQLRequestError(`WebSocket closed (${close.code} ${String(close.reason ?? "")})`.trim(), 0, code);
    }
    throw err;
  }
}
