import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { envSchema } from "../src/config.ts";

// The README's configuration table comes only from src/config.ts (scripts/config-docs.ts).

describe("configuration docs", () => {
  it("every variable of the schema is described", () => {
    const undescribed = Object.entries(envSchema.shape)
      .filter(([, field]) => !field.description)
      .map(([name]) => name);
    expect(undescribed).toEqual([]);
  });

  it("the README's table is what `npm run config:docs` writes", async () => {
    const root = path.join(import.meta.dirname, "..");
    const run = promisify(execFile)(process.execPath, ["scripts/config-docs.ts", "--check"], { cwd: root });
    await expect(run).resolves.toMatchObject({ stdout: expect.stringContaining("is current") });
  });
});
