import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ConfigError } from "../config.ts";
import type { JobDefinition } from "./define-job.ts";
import { createRegistry, defaultDefinitions, type JobRegistry } from "./registry.ts";

/**
 * Your own job types without forking: a module (JOBS_MODULE, or `jobs/index.ts` in the working
 * directory when there is one) that exports
 *
 *   export const definitions = [sendInvoice];                  // defineJob(...) values
 *   export const processors = () => import("./processors.ts")  // optional; only the worker calls it
 *     .then((m) => m.processors);                               // (or a plain array)
 *
 * The API takes the definitions (validation on enqueue, JSON Schema in `Queue.jobTypes`) and never
 * calls `processors`, so processor code and its dependencies stay out of the API process when it is
 * a function. The worker takes both.
 */
export interface JobsModule {
  /** What was loaded (an absolute path or a package name); undefined when there is no module. */
  source: string | undefined;
  definitions: JobDefinition[];
  /** The module's processors, unchecked (the worker checks their shape); [] without a module. */
  processors(): Promise<unknown[]>;
}

/** Files looked for in the working directory when JOBS_MODULE is not set. */
const DEFAULT_FILES = ["jobs/index.ts", "jobs/index.js", "jobs/index.mjs"];
const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

function problem(message: string): ConfigError {
  return new ConfigError([`JOBS_MODULE: ${message}`]);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Where the module is: a path (relative to `cwd`), a package name, or the default folder. */
function locate(specifier: string | undefined, cwd: string): string | undefined {
  if (specifier === undefined) {
    const found = DEFAULT_FILES.map((f) => path.join(cwd, f)).find((f) => existsSync(f));
    return found && pathToFileURL(found).href;
  }
  if (specifier.startsWith(".") || path.isAbsolute(specifier)) {
    const file = path.resolve(cwd, specifier);
    if (!existsSync(file)) throw problem(`${specifier} not found (looked at ${file})`);
    return pathToFileURL(file).href;
  }
  try {
    return pathToFileURL(createRequire(path.join(cwd, "package.json")).resolve(specifier)).href;
  } catch {
    throw problem(`no file or package named ${JSON.stringify(specifier)} (a path starts with ./ or /)`);
  }
}

function isDefinition(value: unknown): value is JobDefinition {
  const d = value as Partial<JobDefinition> | null;
  return (
    typeof d === "object" &&
    d !== null &&
    typeof d.queue === "string" &&
    typeof d.name === "string" &&
    typeof d.description === "string" &&
    typeof (d.schema as { safeParse?: unknown } | undefined)?.safeParse === "function" &&
    typeof d.defaults === "object" &&
    d.defaults !== null
  );
}

/**
 * Imports the jobs module and checks what it exports; throws a ConfigError naming JOBS_MODULE (the
 * composition roots print it as one line and exit 1) when the module is missing, throws while
 * loading, or exports something that is not a list of `defineJob` values.
 */
export async function loadJobsModule(specifier: string | undefined, cwd = process.cwd()): Promise<JobsModule> {
  const url = locate(specifier, cwd);
  if (url === undefined) return { source: undefined, definitions: [], processors: async () => [] };
  const source = url.startsWith("file:") ? decodeURIComponent(new URL(url).pathname) : url;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw problem(`${source} failed to load: ${describe(err)}`);
  }
  const definitions = mod.definitions;
  if (!Array.isArray(definitions)) throw problem(`${source} must export \`definitions\`: an array of defineJob(...) values`);
  definitions.forEach((d, i) => {
    if (!isDefinition(d)) throw problem(`${source}: definitions[${i}] is not a defineJob(...) value`);
    if (!NAME.test(d.queue) || !NAME.test(d.name)) {
      throw problem(`${source}: ${JSON.stringify(`${d.queue}.${d.name}`)} — queue and job names are 1-100 letters, digits, _ . -`);
    }
  });
  const exported = mod.processors;
  if (exported !== undefined && !Array.isArray(exported) && typeof exported !== "function") {
    throw problem(`${source}: \`processors\` must be an array or a function returning one`);
  }
  return {
    source,
    definitions,
    processors: async () => {
      let list: unknown;
      try {
        list = typeof exported === "function" ? await (exported as () => unknown)() : (exported ?? []);
      } catch (err) {
        throw problem(`${source}: processors() failed: ${describe(err)}`);
      }
      if (!Array.isArray(list)) throw problem(`${source}: processors() must return an array`);
      return list;
    },
  };
}

/**
 * The job types of this deployment: the product's (`defaultDefinitions`) and the jobs module's.
 * A type of the module that the product already defines is a ConfigError, not a silent override.
 */
export async function loadJobTypes(options: {
  demoQueue: boolean;
  jobsModule: string | undefined;
  cwd?: string;
}): Promise<{ registry: JobRegistry; module: JobsModule }> {
  const builtIn = defaultDefinitions(options);
  const module = await loadJobsModule(options.jobsModule, options.cwd);
  const taken = new Set(builtIn.map((d) => `${d.queue}.${d.name}`));
  const seen = new Set<string>();
  for (const d of module.definitions) {
    const key = `${d.queue}.${d.name}`;
    if (taken.has(key)) throw problem(`${module.source}: job type ${key} is already defined by the product`);
    if (seen.has(key)) throw problem(`${module.source}: job type ${key} is defined twice`);
    seen.add(key);
  }
  return { registry: createRegistry([...builtIn, ...module.definitions]), module };
}
