// The Node version check that runs before anything else: `npm run dev`, `npm start` and `npm run worker`
// load it first (`node --import ./scripts/preflight.mjs …`, or imported by dev.mjs). It is plain
// JavaScript with no imports, so it runs on any Node that knows `--import` (18.18+, 20.6+) and says
// what to install instead of letting an old Node fail with ERR_UNKNOWN_FILE_EXTENSION ".ts".
//
// The supported versions are package.json's "engines" (npm enforces them at `npm install` through
// .npmrc's engine-strict). They are: Node 22.22.2+ on the 22 line, 24.15+ on the 24 line, or 26+.
// The server itself runs on any Node that strips TypeScript types (22.18+, 23.6+), but the dev tools'
// own engines (graphql-codegen's prompt library) need 22.22.2 / 24.15 and engine-strict applies to
// every package, so those are the versions `npm install` accepts. test/preflight.test.ts keeps this
// function and package.json's range in agreement.

/** True when `version` ("v24.15.0" or "24.15.0") is one this project runs on. */
export function supportedNode(version) {
  const [major = 0, minor = 0, patch = 0] = String(version).replace(/^v/, "").split(".").map(Number);
  if (major === 22) return minor > 22 || (minor === 22 && patch >= 2);
  if (major === 24) return minor >= 15;
  return major >= 26;
}

export const NEEDED = "Node 24.15+ (or 22.22.2+ on the 22 line, or 26+)";

/** The paragraph printed when the running Node is too old. */
export function tooOldMessage(version) {
  return [
    `${NEEDED} needed, you have ${String(version).replace(/^v/, "")}.`,
    "Install Node 24 (LTS) with one of:",
    "  nvm install 24 && nvm use 24        (https://github.com/nvm-sh/nvm)",
    "  fnm install 24 && fnm use 24        (https://github.com/Schniz/fnm)",
    "  the installer or package manager instructions at https://nodejs.org/en/download",
    "then run `npm install` again (node_modules installed by another Node may not match).",
  ].join("\n");
}

if (!supportedNode(process.version)) {
  process.stderr.write(`\n${tooOldMessage(process.version)}\n\n`);
  process.exit(1);
}
