import { ConfigError, loadConfig } from "../config.ts";

/** The lines a bad environment is refused with; fails the test if it is accepted. */
export function configProblems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error("expected a ConfigError");
}
