import http from "node:http";
import type { AddressInfo } from "node:net";
import { bearerMatches, publicChecks } from "./probe-answers.ts";

export type ReadyCheck = () => Promise<{ ok: boolean; checks: Record<string, string> }>;

/**
 * The readiness checks of the API and the worker: runs every probe at once, each given 1 s; ok when
 * all answered. `checks` says, per probe, "ok" or why it failed.
 */
export async function runReadyChecks(
  probes: Record<string, () => Promise<unknown>>,
): Promise<{ ok: boolean; checks: Record<string, string> }> {
  const checks: Record<string, string> = {};
  const results = await Promise.all(
    Object.entries(probes).map(async ([name, probe]) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          probe(),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timed out after 1s")), 1_000))),
        ]);
        checks[name] = "ok";
        return true;
      } catch (err) {
        checks[name] = `failed: ${err instanceof Error ? err.message : String(err)}`;
        return false;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return { ok: results.every(Boolean), checks };
}

/** `/metrics`: renders the Prometheus text; `token`, when set, must come as `Authorization: Bearer <token>`. */
export interface MetricsEndpoint {
  render(): Promise<{ contentType: string; body: string }>;
  token?: string | undefined;
}

/** The worker's `/healthz`, `/readyz` and `/metrics` (the API serves its own through Yoga). */
export async function startHealthServer(
  port: number,
  host: string,
  ready: ReadyCheck,
  metrics?: MetricsEndpoint,
  /** Where the error texts `/readyz` does not show go. */
  onNotReady: (checks: Record<string, string>) => void = () => {},
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (path === "/healthz") return send(200, { status: "ok" });
    if (path === "/readyz") {
      ready().then(
        (r) => {
          if (!r.ok) onNotReady(r.checks);
          send(r.ok ? 200 : 503, { status: r.ok ? "ready" : "not ready", checks: publicChecks(r.checks) });
        },
        (err) => {
          onNotReady({ ready: `failed: ${String(err)}` });
          send(503, { status: "not ready" });
        },
      );
      return;
    }
    if (path === "/metrics" && metrics) {
      if (metrics.token && !bearerMatches(req.headers.authorization, metrics.token)) return send(401, { error: "unauthorized" });
      metrics.render().then(
        ({ contentType, body }) => {
          res.writeHead(200, { "content-type": contentType });
          res.end(body);
        },
        () => send(503, { error: "metrics unavailable" }),
      );
      return;
    }
    send(404, { error: "not found" });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
