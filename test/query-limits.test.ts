// The pieces of src/server/query-limits.ts on their own: the pre-parse nesting scan, the
// byte-bounded document cache, and the depth / cost rule on the real schema.
import { parse, validate } from "graphql";
import { describe, expect, it } from "vitest";
import { schema } from "../src/graphql/schema.ts";
import { DEFAULT_LIMITS } from "../src/server/app.ts";
import { aliasAndDirectiveRule, ByteBoundedCache, bracketDepth, depthAndCostRule, limitedParse } from "../src/server/query-limits.ts";

describe("bracketDepth", () => {
  it("counts brackets, not those inside strings, block strings or comments", () => {
    expect(bracketDepth("{ a { b(x: [1, {c: 2}]) } }", 100)).toBe(5);
    expect(bracketDepth(`{ a(s: "{{{{[[[[") }`, 100)).toBe(2);
    expect(bracketDepth(`{ a(s: """ {{{{ \\""" [[[ """) }`, 100)).toBe(2);
    expect(bracketDepth("{ a # {{{{{{\n }", 100)).toBe(1);
    expect(bracketDepth(`{ a(s: "\\"{{{") }`, 100)).toBe(2);
  });

  it("stops counting past the limit", () => {
    expect(bracketDepth("[".repeat(1_000_000), 10)).toBe(11);
  });
});

describe("limitedParse", () => {
  it("refuses 5,000 nested brackets before graphql-js recurses into them", () => {
    const p = limitedParse(DEFAULT_LIMITS);
    expect(() => p(`{ a(x: ${"[".repeat(5_000)}${"]".repeat(5_000)}) }`)).toThrow(/nested too deeply/);
    expect(() => p(`{ ${"a ".repeat(10_001)} }`)).toThrow(/more than 10000 tokens/);
    expect(p("{ __typename }").kind).toBe("Document");
  });
});

describe("ByteBoundedCache", () => {
  it("evicts the least recently used entries once their estimated bytes pass the budget", () => {
    // 10 bytes per character + 2 for the key: a 9-character key weighs 108 bytes, nine fit in 1,000.
    const cache = new ByteBoundedCache<number>(1_000, 10);
    for (let i = 0; i < 10; i++) cache.set(`key-${String(i).padStart(5, "0")}`, i);
    expect(cache.size).toBe(9 * 108);
    expect(cache.get("key-00000")).toBeUndefined();
    expect(cache.get("key-00009")).toBe(9);
    // A use keeps an entry: the next ones out are the others.
    const survivor = "key-00001";
    expect(cache.get(survivor)).toBe(1);
    cache.set("key-00010", 10);
    cache.set("key-00011", 11);
    expect(cache.get(survivor)).toBe(1);
    expect(cache.get("key-00002")).toBeUndefined();
  });

  it("does not keep an entry bigger than an eighth of the budget", () => {
    const cache = new ByteBoundedCache<number>(1_000, 10);
    cache.set("x".repeat(20), 1);
    expect(cache.get("x".repeat(20))).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});

describe("depth and cost on the schema", () => {
  const check = (query: string) =>
    validate(schema, parse(query), [depthAndCostRule(DEFAULT_LIMITS), aliasAndDirectiveRule(DEFAULT_LIMITS)]).map((e) => e.message);

  it("counts depth through fragments", () => {
    const nested = (n: number) =>
      `${'job(queue: "demo", id: "1") { ...F }'} fragment F on Job { ${"replays { ".repeat(n)} id ${"} ".repeat(n)} }`;
    expect(check(`{ ${nested(12)} }`)).toEqual([]);
    expect(check(`{ ${nested(15)} }`)).toEqual(["Query too deep: more than 15 levels of fields (MAX_QUERY_DEPTH)"]);
  });

  it("weighs what a field reads: 45 aliases of workers/counts/schedulers cost more than 40 of __typename", () => {
    expect(check(`{ ${Array.from({ length: 40 }, (_, i) => `a${i}: __typename`).join(" ")} }`)).toEqual([]);
    const heavy = `{ ${Array.from({ length: 45 }, (_, i) => `a${i}: queue(name: "demo") { workers counts { waiting } schedulers { id } }`).join(" ")} }`;
    expect(check(heavy)).toEqual(["Query too costly: estimated cost above 5000 (MAX_QUERY_COST)"]);
  });
});
