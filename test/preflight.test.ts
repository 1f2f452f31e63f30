// The Node version check: an old Node gets a sentence saying what to install (for npm run dev, npm
// start, npm run worker), npm install refuses early (engine-strict), and the check agrees with the
// "engines" range npm enforces.
import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { findOnPath } from "../scripts/local/redis.ts";
import { supportedNode, tooOldMessage } from "../scripts/preflight.mjs";

const root = path.resolve(import.meta.dirname, "..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
  engines: { node: string };
  scripts: Record<string, string>;
};
// npm's own range matcher (a dependency of npm's tooling in node_modules), to compare with ours.
const semver = createRequire(import.meta.url)("semver") as { satisfies(v: string, range: string): boolean };

/** A Node older than we support on this machine (Debian's system Node is 20), if there is one. */
function oldNode(): string | undefined {
  for (const candidate of ["/usr/bin/node", "/usr/local/bin/node", "/bin/node"]) {
    try {
      const out = execFileSync(candidate, ["-p", "process.version"], { encoding: "utf8" });
      if (!supportedNode(out.trim())) return candidate;
    } catch {
      // not there
    }
  }
  return undefined;
}

function run(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(file, args, { cwd: options.cwd ?? root, env: options.env ?? process.env }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("which Node versions run the project", () => {
  const versions = [
    "18.20.4",
    "20.20.2",
    "22.12.0",
    "22.18.0",
    "22.22.1",
    "22.22.2",
    "22.30.0",
    "23.11.0",
    "24.0.0",
    "24.14.9",
    "24.15.0",
    "24.22.3",
    "25.2.0",
    "26.0.0",
    "27.1.0",
  ];

  it("the preflight accepts exactly what package.json's engines accept", () => {
    for (const v of versions) expect([v, supportedNode(`v${v}`)]).toEqual([v, semver.satisfies(v, pkg.engines.node)]);
  });

  it("the Node running these tests is supported", () => {
    expect(supportedNode(process.version)).toBe(true);
  });

  it("npm start and npm run worker load the preflight before any TypeScript", () => {
    expect(pkg.scripts.start).toMatch(/^node --import \.\/scripts\/preflight\.mjs /);
    expect(pkg.scripts.worker).toMatch(/^node --import \.\/scripts\/preflight\.mjs /);
    expect(fs.readFileSync(path.join(root, "scripts/dev.mjs"), "utf8")).toMatch(/^import "\.\/preflight\.mjs";$/m);
    expect(fs.readFileSync(path.join(root, ".npmrc"), "utf8")).toMatch(/^engine-strict=true$/m);
  });
});

describe("with an old Node first on PATH", () => {
  // Debian's Node 20 where there is one (every machine this project's CI runs on); elsewhere this
  // Node, told it is 20.20.2 (process.version, which the preflight and npm's engine check read).
  const node = process.env.PREFLIGHT_TEST_FAKE_OLD_NODE === "true" ? undefined : oldNode();
  const fake = "20.20.2";
  const fakeVersion = `data:text/javascript,Object.defineProperty(process,"version",{value:"v${fake}"})`;
  const nodeArgs = (args: string[]) => (node ? args : ["--import", fakeVersion, ...args]);

  it("npm start, npm run worker and npm run dev say what to install, without a loader error", async () => {
    const version = node ? (await run(node, ["-p", "process.versions.node"])).stdout.trim() : fake;
    for (const args of [
      ["--import", "./scripts/preflight.mjs", "src/server/main.ts"],
      ["--import", "./scripts/preflight.mjs", "--max-semi-space-size=32", "workers/main.ts"],
      ["scripts/dev.mjs"],
    ]) {
      const r = await run(node ?? process.execPath, nodeArgs(args));
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(tooOldMessage(version));
      expect(r.stderr).toContain(`needed, you have ${version}`);
      expect(r.stderr).not.toContain("ERR_UNKNOWN_FILE_EXTENSION");
    }
  });

  it("npm install refuses at once with EBADENGINE naming the versions (engine-strict)", async () => {
    // A copy of package.json, its lockfile and .npmrc, installed for real (offline: npm refuses before it
    // would fetch anything, and the lockfile spares it resolving the tree, ~20 s).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "engine-strict-"));
    try {
      fs.copyFileSync(path.join(root, "package.json"), path.join(dir, "package.json"));
      fs.copyFileSync(path.join(root, ".npmrc"), path.join(dir, ".npmrc"));
      fs.copyFileSync(path.join(root, "package-lock.json"), path.join(dir, "package-lock.json"));
      const nodeBin = node ?? process.execPath;
      // npm's own entry: the one next to that node, else the first on PATH.
      const npm = [path.join(path.dirname(nodeBin), "npm"), findOnPath("npm")].find((f) => f && fs.existsSync(f)) as string;
      const npmCli = path.join(path.dirname(fs.realpathSync(npm)), "npm-cli.js");
      const r = await run(nodeBin, nodeArgs([npmCli, "install", "--offline", "--ignore-scripts", "--no-audit", "--no-fund"]), {
        cwd: dir,
        env: { PATH: `${path.dirname(nodeBin)}:/usr/bin:/bin`, HOME: dir },
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("EBADENGINE");
      expect(r.stderr).toContain(pkg.engines.node);
      expect(fs.existsSync(path.join(dir, "node_modules"))).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
