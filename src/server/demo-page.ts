import { readFile } from "node:fs/promises";
import path from "node:path";
import { build } from "esbuild";
import type { Plugin } from "graphql-yoga";
import type { Logger } from "../infra/logger.ts";

/** The page's source: index.html, main.ts (and what it imports, the typed client included), style.css. */
const SOURCE = path.resolve(import.meta.dirname, "../demo-page");

interface Asset {
  body: string;
  type: string;
}

/** What the page learns of the API it is served by: its MAX_FLOW_NODES bounds the fan-out's N. */
export interface DemoPageSettings {
  maxFlowNodes?: number | undefined;
}

/** index.html with the API's settings in its `<meta>` tags (the file holds the defaults). */
export function withSettings(html: string, settings: DemoPageSettings): string {
  const nodes = settings.maxFlowNodes;
  if (nodes === undefined) return html;
  if (!Number.isSafeInteger(nodes) || nodes < 1) throw new Error(`maxFlowNodes must be a positive integer, not ${nodes}`);
  const tag = /<meta name="max-flow-nodes" content="\d+" \/>/;
  if (!tag.test(html)) throw new Error('index.html has no <meta name="max-flow-nodes" content="..." /> to set');
  return html.replace(tag, `<meta name="max-flow-nodes" content="${nodes}" />`);
}

/**
 * The page and its bundle, built by esbuild in memory: no build step to remember, nothing written
 * to disk. About 100 ms the first time; see `demoPagePlugin` for when it is built again.
 */
export async function buildDemoPage(settings: DemoPageSettings = {}): Promise<Map<string, Asset>> {
  const [html, result] = await Promise.all([
    readFile(path.join(SOURCE, "index.html"), "utf8"),
    build({
      entryPoints: [path.join(SOURCE, "main.ts")],
      bundle: true,
      format: "esm",
      platform: "browser",
      target: ["es2022"],
      minify: true,
      legalComments: "none",
      define: { "process.env.NODE_ENV": '"production"' },
      outdir: "/demo",
      entryNames: "app",
      write: false,
      logLevel: "silent",
    }),
  ]);
  const assets = new Map<string, Asset>([["/demo", { body: withSettings(html, settings), type: "text/html; charset=utf-8" }]]);
  for (const file of result.outputFiles) {
    const type = file.path.endsWith(".css") ? "text/css; charset=utf-8" : "text/javascript; charset=utf-8";
    assets.set(`/demo/${path.basename(file.path)}`, { body: file.text, type });
  }
  return assets;
}

/** Same-origin scripts, styles and connections (the WebSocket included) only; no frames, no forms elsewhere. */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

/**
 * Serves `/demo` (and `/demo/`), `/demo/app.js` and `/demo/app.css`; any other path under `/demo/`
 * is a 404, and no path reaches the file system. Built on the first request; with `rebuildOnLoad`
 * (development) built again each time the page itself is loaded, so edits show on reload. The page
 * carries `maxFlowNodes` (MAX_FLOW_NODES) in a `<meta>` tag: its fan-out's bound.
 */
export function demoPagePlugin(options: { log: Logger; rebuildOnLoad: boolean } & DemoPageSettings): Plugin {
  let assets: Promise<Map<string, Asset>> | undefined;
  const load = () => {
    assets ??= buildDemoPage({ maxFlowNodes: options.maxFlowNodes }).catch((err: unknown) => {
      assets = undefined;
      throw err;
    });
    return assets;
  };
  return {
    async onRequest({ url, request, endResponse }) {
      if (url.pathname !== "/demo" && !url.pathname.startsWith("/demo/")) return;
      const name = url.pathname === "/demo/" ? "/demo" : url.pathname;
      if (request.method !== "GET" && request.method !== "HEAD") {
        endResponse(new Response("Method Not Allowed\n", { status: 405, headers: { allow: "GET, HEAD" } }));
        return;
      }
      if (name === "/demo" && options.rebuildOnLoad) assets = undefined;
      let asset: Asset | undefined;
      try {
        asset = (await load()).get(name);
      } catch (err) {
        options.log.error("could not build the demo page", { err: err instanceof Error ? err.message : String(err) });
        endResponse(new Response("The demo page could not be built; the API log says why.\n", { status: 500 }));
        return;
      }
      if (!asset) {
        endResponse(new Response("Not Found\n", { status: 404, headers: { "content-type": "text/plain; charset=utf-8" } }));
        return;
      }
      const body = request.method === "HEAD" ? null : asset.body;
      endResponse(new Response(body, { headers: { "content-type": asset.type, ...SECURITY_HEADERS } }));
    },
  };
}
