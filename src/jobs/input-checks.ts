import type { ValidationIssue } from "./errors.ts";

/** The default deepest nesting of a JSON value (MAX_DATA_DEPTH). */
export const DEFAULT_MAX_DATA_DEPTH = 64;

/**
 * The first problem of a value a client sent, before it travels on: nesting deeper than `maxDepth`
 * (recursive code further on, JSON.stringify included, would overflow its stack) or a NUL character
 * (`\u0000`) in a string or key, which PostgreSQL stores in neither text nor jsonb. Iterative, so a
 * value nested 100,000 deep is refused rather than crashing the check itself. Null when fine.
 */
export function inputProblem(value: unknown, maxDepth: number, path: string[] = [], shownLimit = maxDepth): ValidationIssue | null {
  const stack: { value: unknown; depth: number; path: string[] }[] = [{ value, depth: 0, path }];
  while (stack.length > 0) {
    const item = stack.pop() as (typeof stack)[number];
    const v = item.value;
    if (typeof v === "string") {
      if (v.includes("\u0000")) return { path: item.path, message: "contains a NUL character (\\u0000), which cannot be stored" };
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    if (item.depth >= maxDepth) return { path: item.path, message: `is nested more than ${shownLimit} levels deep (MAX_DATA_DEPTH)` };
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], depth: item.depth + 1, path: [...item.path, String(i)] });
    } else {
      for (const [k, child] of Object.entries(v)) {
        if (k.includes("\u0000")) return { path: item.path, message: "has a key with a NUL character (\\u0000), which cannot be stored" };
        stack.push({ value: child, depth: item.depth + 1, path: [...item.path, k] });
      }
    }
  }
  return null;
}
