import path from "node:path";
import { createClient } from "graphql-ws/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EnqueueJobDocument, JobEventsDocument } from "../src/client/generated/graphql.ts";
import { applyJobEvent, UNKNOWN_JOB } from "../src/client/job-status.ts";
import { request, watch } from "../src/client/request.ts";
import { ConfigError } from "../src/config.ts";
import { loadJobsModule, loadJobTypes } from "../src/jobs/jobs-module.ts";
import { gql } from "../src/testing/graphql.ts";
import { startApi, startWorker } from "../src/testing/processes.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// Job types of the team's own (examples/custom-jobs) loaded with JOBS_MODULE by the API and a real
// worker process, and every way a jobs module can be wrong.

const EXAMPLE = "./examples/custom-jobs/index.ts";
const FIXTURES = path.resolve(import.meta.dirname, "fixtures/jobs-modules");
const fixture = (name: string) => `./test/fixtures/jobs-modules/${name}`;

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack({ worker: true, env: { JOBS_MODULE: EXAMPLE } });
});

afterAll(() => stack?.stop());

const invoice = {
  invoiceId: "INV-42",
  currency: "EUR",
  lines: [
    { description: "hosting", quantity: 3, unitCents: 1250 },
    { description: "support", quantity: 1, unitCents: 9900 },
    { description: "domain", quantity: 2, unitCents: 1500 },
    { description: "backup", quantity: 4, unitCents: 300 },
  ],
};

const enqueue = (data: unknown) =>
  request(stack.api.url, EnqueueJobDocument, { input: { queue: "billing", name: "invoice-total", data } }).then((r) => r.enqueueJob);

describe("JOBS_MODULE=./examples/custom-jobs/index.ts", () => {
  it("runs billing.invoice-total end to end: enqueued through the API, run by the worker, followed live", async () => {
    const enqueued = await enqueue(invoice);
    expect(enqueued.__typename).toBe("EnqueueJobSuccess");
    if (enqueued.__typename !== "EnqueueJobSuccess") return;
    const client = createClient({ url: stack.api.url.replace(/^http/, "ws") });
    const types: string[] = [];
    let status = UNKNOWN_JOB;
    try {
      for await (const { jobEvents } of watch(client, JobEventsDocument, { queue: "billing", id: enqueued.job.id })) {
        types.push(jobEvents.type);
        status = applyJobEvent(status, jobEvents);
      }
    } finally {
      await client.dispose();
    }
    expect(status.state).toBe("COMPLETED");
    expect(status.result).toEqual({ invoiceId: "INV-42", currency: "EUR", totalCents: 3 * 1250 + 9900 + 2 * 1500 + 4 * 300 });
    expect(status.percent).toBe(100);
    // A job that finished before the subscription started answers with its SNAPSHOT alone.
    expect(["COMPLETED", "SNAPSHOT"]).toContain(types.at(-1));

    // The processor's log line and the definition's defaults (3 attempts) are the job's.
    const { body } = await gql<{ job: { logs: string[]; maxAttempts: number } }>(
      stack.api.url,
      `query ($id: ID!) { job(queue: "billing", id: $id) { logs maxAttempts } }`,
      { id: enqueued.job.id },
    );
    expect(body.data?.job).toEqual({ logs: ["invoice INV-42: 4 lines, 17850 cents"], maxAttempts: 3 });
  });

  it("publishes the job type and its payload's JSON Schema", async () => {
    const { body } = await gql<{ queue: { jobTypes: { name: string; payloadSchema: Record<string, unknown> }[] } }>(
      stack.api.url,
      `{ queue(name: "billing") { jobTypes { name payloadSchema } } }`,
    );
    const [type] = body.data?.queue.jobTypes ?? [];
    expect(type?.name).toBe("invoice-total");
    expect(type?.payloadSchema).toMatchObject({
      type: "object",
      required: ["invoiceId", "currency", "lines"],
      properties: { currency: { enum: ["EUR", "USD", "GBP"] }, lines: { type: "array", minItems: 1, maxItems: 1000 } },
      additionalProperties: false,
    });
  });

  it("refuses payloads the module's schema refuses, naming the field: wrong, missing, extra, huge", async () => {
    const cases: [unknown, (string | number)[]][] = [
      [{ ...invoice, currency: "BTC" }, ["data", "currency"]],
      [{ ...invoice, lines: [] }, ["data", "lines"]],
      [{ ...invoice, lines: [{ description: "x", quantity: 0, unitCents: 1 }] }, ["data", "lines", 0, "quantity"]],
      [{ ...invoice, lines: [{ description: "x", quantity: 1.5, unitCents: 1 }] }, ["data", "lines", 0, "quantity"]],
      [{ invoiceId: "INV-1", lines: invoice.lines }, ["data", "currency"]],
      [{ ...invoice, admin: true }, ["data"]],
      [{ ...invoice, lines: Array.from({ length: 1001 }, () => invoice.lines[0]) }, ["data", "lines"]],
      [{ ...invoice, invoiceId: "x".repeat(65) }, ["data", "invoiceId"]],
      ["not an object", ["data"]],
    ];
    for (const [data, field] of cases) {
      const answer = await enqueue(data);
      expect(answer.__typename, JSON.stringify(field)).toBe("ValidationError");
      if (answer.__typename !== "ValidationError") continue;
      expect(answer.issues.map((i) => i.path)).toContainEqual(field.map(String));
    }
  });

  it("leaves the product's own job types as they were", async () => {
    const answer = await request(stack.api.url, EnqueueJobDocument, {
      input: { queue: "demo", name: "sleep", data: { steps: 1, stepMs: 0 } },
    });
    expect(answer.enqueueJob.__typename).toBe("EnqueueJobSuccess");
  });
});

describe("finding the jobs module", () => {
  it("loads jobs/index.ts from the working directory when JOBS_MODULE is not set", async () => {
    const found = await loadJobsModule(undefined, path.join(FIXTURES, "default-folder"));
    expect(found.source).toBe(path.join(FIXTURES, "default-folder/jobs/index.ts"));
    expect(found.definitions.map((d) => `${d.queue}.${d.name}`)).toEqual(["found.by-folder"]);
    expect(await found.processors()).toEqual([]);
  });

  it("loads nothing when there is no module and no jobs/ folder", async () => {
    const none = await loadJobsModule(undefined, FIXTURES);
    expect(none).toMatchObject({ source: undefined, definitions: [] });
    const { registry } = await loadJobTypes({ demoQueue: true, jobsModule: undefined, cwd: FIXTURES });
    expect(registry.queues()).toEqual(["demo", "report", "webhook"]);
  });

  it("keeps processors out of the API: the definitions load without importing them", async () => {
    const loaded = await loadJobsModule(EXAMPLE);
    expect(loaded.definitions.map((d) => `${d.queue}.${d.name}`)).toEqual(["billing.invoice-total"]);
    const [processor] = (await loaded.processors()) as { definition: unknown }[];
    expect(processor?.definition).toBe(loaded.definitions[0]);
  });
});

describe("a jobs module that is wrong", () => {
  const problemOf = async (jobsModule: string) => {
    const err = await loadJobTypes({ demoQueue: true, jobsModule }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  };

  it("is one line naming JOBS_MODULE and what is wrong, for each way", async () => {
    expect(await problemOf("./nope/index.ts")).toEqual([
      `JOBS_MODULE: ./nope/index.ts not found (looked at ${path.resolve("nope/index.ts")})`,
    ]);
    expect(await problemOf("no-such-package-of-jobs")).toEqual([
      'JOBS_MODULE: no file or package named "no-such-package-of-jobs" (a path starts with ./ or /)',
    ]);
    expect((await problemOf(fixture("throws.ts")))[0]).toMatch(/^JOBS_MODULE: .*throws\.ts failed to load: the team's module is broken$/);
    expect((await problemOf(fixture("not-an-array.ts")))[0]).toMatch(/must export `definitions`: an array of defineJob\(\.\.\.\) values$/);
    expect((await problemOf(fixture("not-a-definition.ts")))[0]).toMatch(/definitions\[0\] is not a defineJob\(\.\.\.\) value$/);
    expect((await problemOf(fixture("bad-name.ts")))[0]).toMatch(
      /"billing:\*\.total" — queue and job names are 1-100 letters, digits, _ \. -$/,
    );
    expect((await problemOf(fixture("takes-a-builtin.ts")))[0]).toMatch(/job type webhook\.deliver is already defined by the product$/);
    expect((await problemOf(fixture("defined-twice.ts")))[0]).toMatch(/job type billing\.total is defined twice$/);
  });

  it("stops the API process at start with that line, and no stack trace", async () => {
    const api = await startApi({ ...stack.env, JOBS_MODULE: fixture("throws.ts") }).catch((err: Error) => err);
    expect(api).toBeInstanceOf(Error);
    const message = (api as Error).message;
    expect(message).toMatch(/exited with 1 before it was ready/);
    expect(message).toMatch(/config error: JOBS_MODULE: .*throws\.ts failed to load: the team's module is broken/);
    expect(message).not.toMatch(/\n\s+at /);
  });

  it("stops a worker whose processors are not defineProcessor values or run a type the module does not define", async () => {
    for (const [name, line] of [
      ["bad-processors.ts", /config error: JOBS_MODULE: .*bad-processors\.ts: processors\[0\] is not a defineProcessor\(\.\.\.\) value/],
      ["unregistered-processor.ts", /processors\[0\] runs billing\.refund, which `definitions` does not export/],
    ] as const) {
      const worker = await startWorker({ ...stack.env, JOBS_MODULE: fixture(name) }).catch((err: Error) => err);
      expect(worker).toBeInstanceOf(Error);
      expect((worker as Error).message).toMatch(line);
      expect((worker as Error).message).not.toMatch(/\n\s+at /);
    }
  });

  it("is never asked for its processors by the API; a worker that gets an error from them stops", async () => {
    const api = await startApi({ ...stack.env, JOBS_MODULE: fixture("processors-throw.ts") });
    try {
      const origin = /GraphQL API ready at (\S+)/.exec(api.stdout())?.[1] ?? "";
      const { body } = await gql<{ queue: { jobTypes: { name: string }[] } }>(origin, `{ queue(name: "billing") { jobTypes { name } } }`);
      expect(body.data?.queue.jobTypes).toEqual([{ name: "total" }]);
    } finally {
      await api.stop();
    }
    const worker = await startWorker({ ...stack.env, JOBS_MODULE: fixture("processors-throw.ts") }).catch((err: Error) => err);
    expect((worker as Error).message).toMatch(
      /config error: JOBS_MODULE: .*processors-throw\.ts: processors\(\) failed: processors\(\) was called/,
    );
  });

  it("refuses a JOBS_MODULE longer than 1000 characters before loading anything", async () => {
    const { loadConfig } = await import("../src/config.ts");
    expect(() => loadConfig({ JOBS_MODULE: `./${"a".repeat(1001)}` })).toThrow(/^JOBS_MODULE: JOBS_MODULE must be a path or package name/);
  });
});
