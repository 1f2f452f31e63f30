// `npm run lint` (after Biome): the module boundaries of src/jobs, checked on madge's import graph.
//
// src/jobs is the domain. Its model files (errors, job-view, define-job, registry, definitions/)
// sit at the bottom; above them four modules, in this direction:
//
//   model <- bullmq <- history, events <- control
//
// - a module imports only modules below it (history and events do not import each other);
// - code outside src/jobs imports a module only through its public face, `<module>/index.ts`;
// - src/jobs never imports the GraphQL layer, the server or the workers.
// Exits 1 naming every import that breaks a rule.
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

if (problems.length > 0) {
  console.error(`Module boundaries broken (see scripts/check-boundaries.mjs):\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`Module boundaries hold (${Object.keys(graph.obj()).length} files).`);
