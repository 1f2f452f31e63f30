import { type DefinitionNode, GraphQLError, Kind, type OperationDefinitionNode } from "graphql";
import type { Plugin } from "graphql-yoga";

/** Default limit of an ordinary request body (MAX_REQUEST_BYTES). */
export const REQUEST_BODY_LIMIT_BYTES = 1024 * 1024;

/** Default budget of an `enqueueJobs` request body (MAX_BULK_REQUEST_BYTES). */
export const BULK_REQUEST_BODY_LIMIT_BYTES = 16 * 1024 * 1024;

const tooLarge = (limit: number) =>
  new GraphQLError(`Request body too large (at most ${limit} bytes)`, {
    extensions: { code: "REQUEST_ENTITY_TOO_LARGE", http: { status: 413 } },
  });

/** True when the operation run is a mutation whose only root field is `enqueueJobs`. */
function isBulkEnqueue(operation: OperationDefinitionNode | undefined): boolean {
  return (
    operation?.operation === "mutation" &&
    operation.selectionSet.selections.length > 0 &&
    operation.selectionSet.selections.every((s) => s.kind === Kind.FIELD && s.name.value === "enqueueJobs")
  );
}

/**
 * The request body limit, as Yoga's built-in one (413 past `limit`, 400 for a malformed
 * Content-Length) but without its per-request cost: Yoga pipes every body through a TransformStream
 * to count bytes, which was about half of the time a small query took (bench/: graphql-layer). With
 * a valid Content-Length there is nothing to count, because Node's HTTP parser hands the handler
 * exactly that many bytes; only bodies without one (chunked) are counted as they stream in.
 * Use with `maxRequestBodySize: false` in createYoga.
 *
 * Two limits: `ordinary` for every request, and `bulk` for a request that turns out to run only
 * `enqueueJobs` (its inputs legitimately weigh more): a body between the two is read and parsed
 * (the caller is already authenticated), and refused with 413 unless its operation is enqueueJobs.
 */
export function requestBodyLimitPlugin(
  ordinary = REQUEST_BODY_LIMIT_BYTES,
  bulk = Math.max(ordinary, BULK_REQUEST_BODY_LIMIT_BYTES),
): Plugin {
  // Requests whose body is past the ordinary limit (but within the bulk budget): they may only run enqueueJobs.
  const large = new WeakSet<Request>();
  const limit = bulk;
  return {
    // A large body's weight must be in its variables (the inputs): its document is held to the
    // ordinary limit before it is parsed.
    onParams({ params, request }) {
      if (large.has(request) && typeof params.query === "string" && params.query.length > ordinary) throw tooLarge(ordinary);
    },
    onExecute({ args }) {
      const request = (args.contextValue as { request?: Request }).request;
      if (!request || !large.has(request)) return;
      const operation = args.document.definitions.find(
        (d: DefinitionNode): d is OperationDefinitionNode =>
          d.kind === Kind.OPERATION_DEFINITION && (args.operationName == null || d.name?.value === args.operationName),
      );
      if (!isBulkEnqueue(operation)) throw tooLarge(ordinary);
    },
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      const length = request.headers.get("content-length");
      if (length != null) {
        if (!/^\d+$/.test(length)) {
          throw new GraphQLError("Content-Length header is invalid.", { extensions: { code: "BAD_REQUEST", http: { status: 400 } } });
        }
        if (Number(length) > limit) throw tooLarge(Number(length) > ordinary ? limit : ordinary);
        if (Number(length) > ordinary) large.add(request);
        return;
      }
      if (requestParser == null || request.body == null) return;
      const parse = requestParser;
      setRequestParser((req) => {
        if (!req.body) return parse(req);
        let bytes = 0;
        // A native body (in-process `app.fetch`) needs the native TransformStream, Node's requests the
        // ponyfill one: mixing them throws (Yoga does the same, graphql-yoga#4583).
        const Transform = req.body instanceof ReadableStream ? globalThis.TransformStream : fetchAPI.TransformStream;
        const counted = req.body.pipeThrough(
          new Transform<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              bytes += chunk.byteLength;
              if (bytes > ordinary) large.add(req);
              if (bytes > limit) controller.error(tooLarge(limit));
              else controller.enqueue(chunk);
            },
          }),
        );
        return parse(
          new fetchAPI.Request(req.url, {
            method: req.method,
            headers: req.headers,
            signal: req.signal,
            body: counted,
            duplex: "half",
          } as RequestInit),
        );
      });
    },
  };
}
