import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";
import { withSettings } from "../src/server/demo-page.ts";
import { type RunningProcess, startApi } from "../src/testing/processes.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// `/demo` as an HTTP resource of a real API process: what it serves, what it refuses, and DEMO_PAGE.

let stack: TestStack;
let on: RunningProcess;
let off: RunningProcess;
let base: string;
let offBase: string;

const origin = (api: RunningProcess) => new URL(/GraphQL API ready at (\S+)/.exec(api.stdout())?.[1] ?? "").origin;

beforeAll(async () => {
  stack = await startTestStack({ worker: false });
  // No DEMO_PAGE: on by default outside production (this process runs as development). Its
  // MAX_FLOW_NODES goes into the page (the fan-out's bound).
  [on, off] = await Promise.all([startApi({ ...stack.env, MAX_FLOW_NODES: "200" }), startApi({ ...stack.env, DEMO_PAGE: "false" })]);
  base = origin(on);
  offBase = origin(off);
});

afterAll(async () => {
  await Promise.all([on?.stop(), off?.stop()]);
  await stack?.stop();
});

/** A raw request: the path goes out exactly as written (no URL normalisation by the client). */
function raw(method: string, rawPath: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path: rawPath }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("GET /demo", () => {
  it("serves the page, its bundle and its styles, with a strict CSP", async () => {
    const started = on.stdout();
    expect(started).toContain(`Demo page at ${base}/demo`);

    const page = await fetch(`${base}/demo`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'; script-src 'self'");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await page.text();
    expect(html).toContain('<script type="module" src="/demo/app.js"></script>');
    for (const testid of ["enqueue-steps", "enqueue-step-ms", "enqueue-submit", "fanout-children", "fanout-submit", "fanout-error"]) {
      expect(html).toContain(`data-testid="${testid}"`);
    }
    expect(html).toContain('<meta name="max-flow-nodes" content="200" />');
    expect((await fetch(`${base}/demo/`)).status).toBe(200);

    const script = await fetch(`${base}/demo/app.js`);
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    const js = await script.text();
    // The typed client's documents are bundled in, graphql-ws' client too.
    expect(js).toContain("JobEvents");
    expect(js).toContain("EnqueueFanout");
    expect(js).toContain("FlowEvents");
    expect(js).toContain("graphql-transport-ws");
    expect(js.length).toBeLessThan(200_000);

    const css = await fetch(`${base}/demo/app.css`);
    expect(css.headers.get("content-type")).toBe("text/css; charset=utf-8");
    expect(await css.text()).toContain("progress");
  });

  it("answers HEAD without a body", async () => {
    const res = await raw("HEAD", "/demo/app.js");
    expect(res.status).toBe(200);
    expect(res.body).toBe("");
  });

  it("refuses other methods with 405", async () => {
    for (const method of ["POST", "PUT", "DELETE"]) {
      const res = await raw(method, "/demo");
      expect(res.status).toBe(405);
      expect(res.headers.allow).toBe("GET, HEAD");
    }
  });

  it("maps no path to a file: traversal, encoded dots, NUL bytes and huge paths are 404s", async () => {
    for (const path of [
      "/demo/../package.json",
      "/demo/%2e%2e/package.json",
      "/demo/..%2fpackage.json",
      "/demo/app.js%00",
      "/demo/main.ts",
      "/demo/index.html",
      "/demo/style.css",
      `/demo/${"a".repeat(8_000)}`,
    ]) {
      const res = await raw("GET", path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).not.toContain("job-control-api");
      expect(res.body, path).not.toContain("import ");
    }
    // The API is still healthy afterwards.
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it("is not served with DEMO_PAGE=false", async () => {
    expect(off.stdout()).not.toContain("Demo page at");
    expect((await fetch(`${offBase}/demo`)).status).toBe(404);
    expect((await fetch(`${offBase}/demo/app.js`)).status).toBe(404);
  });
});

describe("the page's settings", () => {
  const html = '<head><meta name="max-flow-nodes" content="1000" /></head>';

  it("writes MAX_FLOW_NODES into the page's meta tag; none given keeps the file's default", () => {
    expect(withSettings(html, { maxFlowNodes: 7 })).toBe('<head><meta name="max-flow-nodes" content="7" /></head>');
    expect(withSettings(html, {})).toBe(html);
  });

  it("refuses a value that is not a positive integer, and a page without the tag", () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => withSettings(html, { maxFlowNodes: bad })).toThrow(/positive integer/);
    expect(() => withSettings("<head></head>", { maxFlowNodes: 7 })).toThrow(/no <meta name="max-flow-nodes"/);
  });
});

describe("DEMO_PAGE", () => {
  it("is on outside production, off in production unless set", () => {
    expect(loadConfig({}).demoPage).toBe(true);
    expect(loadConfig({ NODE_ENV: "production" }).demoPage).toBe(false);
    expect(loadConfig({ NODE_ENV: "production", DEMO_PAGE: "true" }).demoPage).toBe(true);
    expect(loadConfig({ DEMO_PAGE: "0" }).demoPage).toBe(false);
  });

  it("refuses a value that is not a boolean, naming the variable", () => {
    expect(() => loadConfig({ DEMO_PAGE: "yes please" })).toThrow(ConfigError);
    expect(() => loadConfig({ DEMO_PAGE: "yes please" })).toThrow(/^DEMO_PAGE: DEMO_PAGE must be true or false \(got "yes please"\)$/);
  });
});
