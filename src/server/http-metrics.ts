import type { Plugin } from "graphql-yoga";
import { Counter, type Registry } from "prom-client";

/** The paths `api_http_requests_total` names; anything else is counted as `other` (bounded labels). */
const ROUTES = new Set(["/graphql", "/metrics", "/healthz", "/readyz"]);

/** The path of an absolute URL, without parsing it (this runs for every request). */
function routeOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "other";
  const query = url.indexOf("?", start);
  const path = query < 0 ? url.slice(start) : url.slice(start, query);
  return ROUTES.has(path) ? path.slice(1) : "other";
}

/**
 * `api_http_requests_total{route, status}`: every HTTP response the API sends through Yoga (GraphQL
 * over HTTP and SSE, and the health and metrics endpoints); WebSocket traffic is not HTTP requests.
 * A GraphQL error answered with 200 counts as 200: 5xx means the server failed the request.
 */
export function httpMetricsPlugin(registry: Registry): Plugin {
  const requests = new Counter({
    name: "api_http_requests_total",
    help: "HTTP responses of the API by route (graphql, metrics, healthz, readyz, other) and status code",
    labelNames: ["route", "status"],
    registers: [registry],
  });
  // One child per (route, status) seen, so the hot path does not hash the labels again.
  const children = new Map<string, Counter.Internal>();
  return {
    onResponse({ request, response }) {
      const route = routeOf(request.url);
      const key = `${route} ${response.status}`;
      let child = children.get(key);
      if (!child) {
        child = requests.labels({ route, status: String(response.status) });
        children.set(key, child);
      }
      child.inc();
    },
  };
}
