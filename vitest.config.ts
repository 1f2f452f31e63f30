import { defineConfig } from "vitest/config";

export default defineConfig({
  // graphql 16 ships CJS (main) and ESM (module) builds: Node loads the CJS one for Pothos and Yoga,
  // so the tests' own imports must get that same copy, or graphql's instanceof checks fail.
  resolve: { alias: [{ find: /^graphql$/, replacement: "graphql/index.js" }] },
  test: {
    include: ["test/**/*.test.ts"],
    // The embedded PostgreSQL when none answers on 127.0.0.1:5432 (see the file).
    globalSetup: ["test/global-setup.ts"],
    // Tests start real servers and worker processes against real Redis and PostgreSQL.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    maxWorkers: 2,
    // In CI (.ci/run) also a JSON report, which .ci/summary.mjs turns into one plain closing line.
    reporters: process.env.CI ? ["default", ["json", { outputFile: ".ci/test-results.json" }]] : ["default"],
  },
});
