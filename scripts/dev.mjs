// `npm run dev`: the API and one worker, each restarted when its files change.
import { spawn } from "node:child_process";

const children = [
  ["api", "src/server/main.ts"],
  ["worker", "workers/main.ts"],
].map(([name, entry]) => {
  const child = spawn(process.execPath, ["--watch", "--watch-preserve-output", entry], {
    stdio: "inherit",
    env: { ...process.env, NODE_ENV: process.env.NODE_ENV ?? "development" },
  });
  child.on("exit", (code, signal) => {
    if (!stopping) console.error(`[dev] ${name} exited (${code ?? signal}); stopping`);
    stop(code ?? 1);
  });
  return child;
});

let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  setTimeout(() => process.exit(code), 100).unref();
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));
