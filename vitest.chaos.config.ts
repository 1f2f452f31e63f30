import { defineConfig } from "vitest/config";
import base from "./vitest.config.ts";

// `npm run test:chaos`: the fault drills, kept out of `npm test` by their *.chaos.ts names. They
// kill and restart real processes (and a private Redis), so one file at a time. (Not mergeConfig:
// it would concatenate `include` with the unit tests' pattern.)
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ["test/chaos/**/*.chaos.ts"],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    maxWorkers: 1,
    fileParallelism: false,
    reporters: process.env.CI ? ["default", ["json", { outputFile: ".ci/chaos-results.json" }]] : ["default"],
  },
});
