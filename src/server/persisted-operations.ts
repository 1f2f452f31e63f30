import { createHash } from "node:crypto";
import fs from "node:fs";
import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";

/**
 * PERSISTED_OPERATIONS: `only` runs nothing but the typed client's operations (by hash), `allow`
 * (the default) runs those by hash and any document too.
 */
export type PersistedMode = "only" | "allow";

/** The manifest graphql-codegen's client preset writes (`persistedDocuments`, codegen.ts): `sha256:<hex>` -> document. */
export const MANIFEST_URL = new URL("../client/generated/persisted-documents.json", import.meta.url);

const HASH = /^[0-9a-f]{64}$/;

function refused(status: number, code: string, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code, http: { status } } });
}

/** PERSISTED_OPERATIONS=only and a document that is not in the manifest. */
function onlyPersisted(): GraphQLError {
  return refused(
    403,
    "PERSISTED_QUERY_ONLY",
    "This API runs only persisted operations: send extensions.persistedQuery.sha256Hash of a known operation",
  );
}

/** What a request (HTTP body or GET parameters, or a graphql-ws subscribe payload) carries. */
export interface OperationParams {
  query?: unknown;
  extensions?: unknown;
}

/**
 * Persisted operations, in Apollo's convention: `extensions.persistedQuery = { version: 1,
 * sha256Hash: "<64 hex>" }` names a document of the manifest by the SHA-256 of its text, sent with
 * no `query` (or an empty one: graphql-ws requires the field). One `resolve` for HTTP POST and GET,
 * SSE (Yoga's onParams) and graphql-ws (websocket.ts), so every transport answers alike:
 * - a hash that is not a string of 64 lowercase hex digits: 400 PERSISTED_QUERY_INVALID;
 * - a hash with a `query` whose SHA-256 is another: 400 PERSISTED_QUERY_HASH_MISMATCH;
 * - a hash the manifest lacks, with no `query`: 400 PERSISTED_QUERY_NOT_FOUND (with one, in `allow`,
 *   the query runs as any document would; in `only` it is refused as below);
 * - in `only`, a document without a known hash: 403 PERSISTED_QUERY_ONLY.
 */
export class PersistedOperations {
  readonly mode: PersistedMode;
  private readonly byHash: Map<string, string>;

  constructor(mode: PersistedMode, manifest: Record<string, string>) {
    this.mode = mode;
    this.byHash = new Map(Object.entries(manifest).map(([hash, text]) => [hash.replace(/^sha256:/, ""), text]));
  }

  /** The manifest generated from src/client/*.graphql. */
  static load(mode: PersistedMode): PersistedOperations {
    return new PersistedOperations(mode, JSON.parse(fs.readFileSync(MANIFEST_URL, "utf8")) as Record<string, string>);
  }

  get size(): number {
    return this.byHash.size;
  }

  /** The document text to run; throws a GraphQLError (with its HTTP status) when the request is refused. */
  resolve(params: OperationParams): string | undefined {
    const query = typeof params.query === "string" && params.query !== "" ? params.query : undefined;
    const persisted = (params.extensions as { persistedQuery?: unknown } | null | undefined)?.persistedQuery;
    if (persisted === undefined || persisted === null) {
      if (this.mode === "only") {
        throw onlyPersisted();
      }
      return query;
    }
    const hash = (persisted as { sha256Hash?: unknown }).sha256Hash;
    if (typeof hash !== "string" || !HASH.test(hash)) {
      throw refused(400, "PERSISTED_QUERY_INVALID", "extensions.persistedQuery.sha256Hash must be 64 lowercase hex digits");
    }
    if (query !== undefined && createHash("sha256").update(query).digest("hex") !== hash) {
      throw refused(400, "PERSISTED_QUERY_HASH_MISMATCH", "extensions.persistedQuery.sha256Hash is not the SHA-256 of query");
    }
    const known = this.byHash.get(hash);
    if (known !== undefined) return known;
    if (query === undefined) throw refused(400, "PERSISTED_QUERY_NOT_FOUND", "No persisted operation has this sha256Hash");
    if (this.mode === "only") {
      throw onlyPersisted();
    }
    return query;
  }

  /** Yoga's side: every HTTP request's parameters (POST, GET, SSE) before they are parsed. */
  plugin(): Plugin {
    return {
      onParams: ({ params, setParams }) => {
        const query = this.resolve(params);
        if (query !== params.query) setParams({ ...params, query });
      },
    };
  }
}
