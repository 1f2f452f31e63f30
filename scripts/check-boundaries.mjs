// `npm run lint` (after Biome): the module boundaries of src/jobs, checked on madge's import graph.
//
// src/jobs is the domain. Its model files (errors, job-view, define-job, registry, definitions/)
// sit at the bottom; above them four modules, in this direction:
//
//   model <- bullmq <- history, events <- control
//
// - a module imports only modules below it (history and events do not import each other);
// - code outside src/jobs imports a module only through its public face, `<module>/index.ts`;
// - src/jobs never imports the GraphQL layer, the server or the workers;
// - only src/jobs/bullmq spells BullMQ's private layout (the `defa` field, key names such as
//   `:events` / `:failed` / `:completed`, `qualifiedName`, XADD into its stream, `repeat:` ids):
//   everyone else calls its functions (tests may spell them, to pin them).
// Exits 1 naming every import that breaks a rule.
import { readFileSync } from "node:fs";
import path from "node:path";
import madge from "madge";

const MODULES = ["bullmq", "history", "events", "control"];
/** What each module (and the model) may import from src/jobs. */
const ALLOWED = {
  model: ["model"],
  bullmq: ["model", "bullmq"],
  history: ["model", "bullmq", "history"],
  events: ["model", "bullmq", "events"],
  control: ["model", "bullmq", "history", "events", "control"],
};

/** `model`, a module name, or null for a file outside src/jobs. */
function layerOf(file) {
  if (!file.startsWith("src/jobs/")) return null;
  const first = file.slice("src/jobs/".length).split("/")[0];
  return MODULES.includes(first) ? first : "model";
}

const graph = await madge(["src", "workers", "test", "bench", "scripts"], {
  fileExtensions: ["ts", "mjs"],
  excludeRegExp: [/^src\/generated/, /node_modules/],
  baseDir: process.cwd(),
});

const problems = [];
for (const [from, targets] of Object.entries(graph.obj())) {
  const fromLayer = layerOf(from);
  for (const to of targets) {
    const toLayer = layerOf(to);
    if (fromLayer === null) {
      if (toLayer !== null && toLayer !== "model" && path.basename(to) !== "index.ts") {
        problems.push(`${from} imports ${to}: outside src/jobs, import src/jobs/${toLayer}/index.ts instead`);
      }
      continue;
    }
    if (toLayer === null) {
      if (/^(src\/graphql|src\/server|workers)\//.test(to))
        problems.push(`${from} imports ${to}: src/jobs never imports the layers above it`);
      continue;
    }
    if (!ALLOWED[fromLayer].includes(toLayer)) {
      problems.push(`${from} imports ${to}: ${fromLayer} may import only ${ALLOWED[fromLayer].join(", ")}`);
    }
  }
}

/** BullMQ internals: code outside src/jobs/bullmq (and the tests) must not spell these. */
const BULLMQ_INTERNALS = [
  [/["'`]defa["'`]|\.deferredFailure\b/, "BullMQ's deferred-failure field"],
  [/qualifiedName/, "a hand-built BullMQ key"],
  [/:(?:events|completed|failed|wait|active|delayed|meta)`/, "a hand-built BullMQ key"],
  [/\.xadd\(/, "a write into BullMQ's events stream"],
  [/["'`]repeat:/, "BullMQ's scheduler job ids"],
];
for (const file of Object.keys(graph.obj())) {
  if (
    file.startsWith("src/jobs/bullmq/") ||
    file.startsWith("test/") ||
    file.startsWith("src/testing/") ||
    file === "scripts/check-boundaries.mjs"
  )
    continue;
  const text = readFileSync(file, "utf8");
  for (const [pattern, what] of BULLMQ_INTERNALS) {
    const line = text.split("\n").findIndex((l) => pattern.test(l));
    if (line >= 0) problems.push(`${file}:${line + 1} spells ${what}: only src/jobs/bullmq may (use its functions)`);
  }
}

if (problems.length > 0) {
  console.error(`Module boundaries broken (see scripts/check-boundaries.mjs):\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`Module boundaries hold (${Object.keys(graph.obj()).length} files).`);
