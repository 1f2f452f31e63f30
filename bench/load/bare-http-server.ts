// Baseline: a bare Node HTTP server that reads the POST body and answers the JSON our server answers
// to `{ __typename }`. Reports its port over IPC.
import http from "node:http";
import type { AddressInfo } from "node:net";

const body = JSON.stringify({ data: { __typename: "Query" } });
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    // Parse it, as a GraphQL server must, so the baseline does the same minimum of work per request.
    JSON.parse(Buffer.concat(chunks).toString() || "{}");
    res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
});
server.listen(0, "127.0.0.1", () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on("disconnect", () => process.exit(0));
