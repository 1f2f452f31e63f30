import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RunningProcess, startApi } from "../src/testing/processes.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// The demo page in a real browser (Debian's chromium, driven by playwright-core) against a real API
// process and a real worker process: enqueue, a bar that reaches 100 %, a failure and its replay, a
// fan-out (a flow) whose one bar counts its children, and the N the page refuses.

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = path.resolve(import.meta.dirname, "artifacts");
const ADMIN_KEY = "demo-page-test-admin-key-0123456789";

let stack: TestStack;
let openApi: RunningProcess;
let authApi: RunningProcess;
let context: BrowserContext;
let userDataDir: string;

function pageUrl(api: RunningProcess): string {
  const graphql = /GraphQL API ready at (\S+)/.exec(api.stdout())?.[1];
  if (!graphql) throw new Error(`the API printed no URL:\n${api.stdout()}`);
  return new URL("/demo", graphql).href;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  stack = await startTestStack({ worker: true });
  [openApi, authApi] = await Promise.all([
    // PERSISTED_OPERATIONS=only: the page sends only its operations' hashes (the typed client).
    // MAX_FLOW_NODES=50: the fan-out's bound comes from the server (49 children and the parent).
    startApi({ ...stack.env, DEMO_PAGE: "true", PERSISTED_OPERATIONS: "only", MAX_FLOW_NODES: "50" }),
    startApi({ ...stack.env, DEMO_PAGE: "true", ADMIN_API_KEY: ADMIN_KEY, PERSISTED_OPERATIONS: "only" }),
  ]);
  userDataDir = await mkdtemp(path.join(os.tmpdir(), "demo-page-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 960, height: 860 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

afterAll(async () => {
  await context?.close();
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  await Promise.all([openApi?.stop(), authApi?.stop()]);
  await stack?.stop();
});

// A failed test leaves the page as it was: its picture and HTML say where it stopped.
afterEach(async ({ task }) => {
  if (task.result?.state !== "fail") return;
  await mkdir(ARTIFACTS, { recursive: true });
  for (const [i, page] of context.pages().entries()) {
    await page.screenshot({ path: path.join(ARTIFACTS, `demo-page-failed-${i}.png`), fullPage: true }).catch(() => {});
  }
});

/** Opens the page with a log of its errors; fails the test on any uncaught error in the page. */
async function open(url: string): Promise<{ page: Page; errors: string[] }> {
  for (const old of context.pages()) await old.close();
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(err.message));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  await page.goto(url);
  return { page, errors };
}

/** Every value the page gives the bar of each job, in order (recorded by the page itself). */
async function recordProgress(page: Page) {
  await page.evaluate(() => {
    const seen: Record<string, number[]> = {};
    (window as unknown as { progressSeen: typeof seen }).progressSeen = seen;
    new MutationObserver((mutations) => {
      for (const m of mutations) {
        const bar = m.target as HTMLProgressElement;
        const id = bar.closest("li")?.dataset.jobId;
        if (id && bar.dataset.testid === "job-progress") seen[id] = [...(seen[id] ?? []), Number(bar.getAttribute("value"))];
      }
    }).observe(document.getElementById("jobs") as HTMLElement, { subtree: true, attributes: true, attributeFilter: ["value"] });
  });
  return (id: string) =>
    page.evaluate((jobId) => (window as unknown as { progressSeen: Record<string, number[]> }).progressSeen[jobId] ?? [], id);
}

const rowSelector = (id: string) => `[data-testid="job-row"][data-job-id="${id}"]`;

/** Clicks `selector` and resolves with the id of the job row that appears because of it. */
async function clickForNewRow(page: Page, selector: string): Promise<string> {
  const before = await page.$$eval('[data-testid="job-row"]', (rows) => rows.map((r) => (r as HTMLElement).dataset.jobId ?? ""));
  await page.click(selector);
  const handle = await page.waitForFunction(
    (known) =>
      [...document.querySelectorAll<HTMLElement>('[data-testid="job-row"]')]
        .map((r) => r.dataset.jobId)
        .find((id) => id && !known.includes(id)),
    before,
    { timeout: 0, polling: 50 },
  );
  return (await handle.jsonValue()) as string;
}

describe("the demo page in chromium", () => {
  it("enqueues a job and shows its bar reaching 100 %, then a failure and its replay", { timeout: 180_000 }, async () => {
    const { page, errors } = await open(pageUrl(openApi));
    await page.waitForSelector("body[data-ready=true]", { timeout: 0 });
    expect(await page.isVisible('[data-testid="key-form"]')).toBe(false);
    const progressOf = await recordProgress(page);

    await page.fill('[data-testid="enqueue-steps"]', "8");
    await page.fill('[data-testid="enqueue-step-ms"]', "250");
    // The queue waits until the page's subscription is live, so the bar has every step to show.
    await stack.queue.pause();
    const jobId = await clickForNewRow(page, '[data-testid="enqueue-submit"]');
    await page.waitForSelector(`${rowSelector(jobId)}[data-live="true"]`, { timeout: 0 });
    await stack.queue.resume();
    await page.waitForSelector(`${rowSelector(jobId)}[data-state="COMPLETED"]`, { timeout: 0 });
    expect(await page.$eval(`${rowSelector(jobId)} [data-testid="job-progress"]`, (bar) => (bar as HTMLProgressElement).value)).toBe(100);
    // Live, not only the final state: the bar went through the steps in order.
    const seen = await progressOf(jobId);
    expect(seen.at(-1)).toBe(100);
    expect(seen.some((v) => v > 0 && v < 100)).toBe(true);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(await page.textContent(`${rowSelector(jobId)} .state`)).toBe("COMPLETED");

    // A second, longer job, so the screenshot shows a bar on its way as well as a full one.
    await page.fill('[data-testid="enqueue-steps"]', "40");
    await page.fill('[data-testid="enqueue-step-ms"]', "250");
    const longId = await clickForNewRow(page, '[data-testid="enqueue-submit"]');

    // A job that fails for good shows in the failures list; Replay enqueues a new job (which fails again: same data).
    const failedId = await clickForNewRow(page, '[data-testid="enqueue-fail"]');
    await page.waitForSelector(`${rowSelector(failedId)}[data-state="FAILED"]`, { timeout: 0 });
    const failure = await page.waitForSelector(`[data-testid="failure-row"][data-job-id="${failedId}"]`, { timeout: 0 });
    expect(await failure.textContent()).toContain("Demo failure");
    const replayId = await clickForNewRow(page, `[data-testid="failure-row"][data-job-id="${failedId}"] [data-testid="replay-button"]`);
    expect(replayId).not.toBe(failedId);
    expect(await page.textContent(rowSelector(replayId))).toContain(`replay of #${failedId}`);
    await page.waitForSelector(`${rowSelector(replayId)}[data-state="FAILED"]`, { timeout: 0 });
    await page.waitForSelector(`[data-testid="failure-row"][data-job-id="${replayId}"]`, { timeout: 0 });
    expect(await page.textContent(`[data-testid="failure-row"][data-job-id="${failedId}"] [data-testid="replay-button"]`)).toBe(
      `Replayed as #${replayId}`,
    );

    // Let the long job get well under way, for the picture.
    await page.waitForFunction(
      (id) => {
        const bar = document.querySelector<HTMLProgressElement>(
          `[data-testid="job-row"][data-job-id="${id}"] [data-testid="job-progress"]`,
        );
        return (bar?.value ?? 0) >= 30;
      },
      longId,
      { timeout: 0, polling: 100 },
    );
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "demo-page.png"), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it("with auth on, asks for the key once, keeps it for the tab, asks again for a wrong one, and follows a fan-out with its job token", {
    timeout: 120_000,
  }, async () => {
    const url = pageUrl(authApi);
    const { page, errors } = await open(url);
    const wsFrames: string[] = [];
    page.on("websocket", (ws) => ws.on("framesent", (frame) => wsFrames.push(String(frame.payload))));
    await page.waitForSelector('[data-testid="key-form"]:visible', { timeout: 0 });
    await page.fill('[data-testid="api-key"]', "not-the-key-at-all-0000");
    await page.click('[data-testid="api-key-submit"]');
    await page.waitForSelector("#key-error:visible", { timeout: 0 });
    expect(await page.textContent("#key-error")).toContain("refused");
    await page.fill('[data-testid="api-key"]', ADMIN_KEY);
    await page.click('[data-testid="api-key-submit"]');
    await page.waitForSelector("body[data-ready=true]", { timeout: 0 });

    await page.fill('[data-testid="enqueue-steps"]', "3");
    await page.fill('[data-testid="enqueue-step-ms"]', "50");
    const id = await clickForNewRow(page, '[data-testid="enqueue-submit"]');
    await page.waitForSelector(`${rowSelector(id)}[data-state="COMPLETED"]`, { timeout: 0 });
    expect(await page.$eval(`${rowSelector(id)} [data-testid="job-progress"]`, (bar) => (bar as HTMLProgressElement).value)).toBe(100);

    // A fan-out with auth on: its bar follows the parent with the flow's job token, like any job's.
    await page.fill('[data-testid="fanout-children"]', "3");
    const parentId = await clickForNewRow(page, '[data-testid="fanout-submit"]');
    await page.waitForSelector(`${rowSelector(parentId)}[data-state="COMPLETED"]`, { timeout: 0 });
    expect(await page.textContent(`${rowSelector(parentId)} [data-testid="flow-count"]`)).toBe("3 of 3 children");
    const childIds = Object.keys(await stack.api.runtime.jobs.childrenValues("demo", parentId)).map((key) => key.slice("demo:".length));
    expect(childIds).toHaveLength(3);

    // A reload in the same tab keeps the key: no second prompt.
    await page.reload();
    await page.waitForSelector("body[data-ready=true]", { timeout: 0 });
    expect(await page.isVisible('[data-testid="key-form"]')).toBe(false);
    // The finished fan-out reads its counts from its SNAPSHOT; its children get no rows of their own.
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent === "3 of 3 children",
      `${rowSelector(parentId)} [data-testid="flow-count"]`,
      { timeout: 0, polling: 50 },
    );
    for (const child of childIds) expect(await page.$(rowSelector(child))).toBeNull();
    // Subscriptions went out with job tokens: the key never crossed a WebSocket.
    expect(wsFrames.length).toBeGreaterThan(0);
    expect(wsFrames.filter((f) => f.includes(ADMIN_KEY))).toEqual([]);
    // The refused key's 401 is the one console error a browser logs for it.
    expect(errors.filter((e) => !e.includes("401"))).toEqual([]);
    await page.close();
  });

  it("fans out: one demo.fanout with N demo.sleep children, one bar for the parent to N of N, then the parent completes", {
    timeout: 180_000,
  }, async () => {
    const { page, errors } = await open(pageUrl(openApi));
    await page.waitForSelector("body[data-ready=true]", { timeout: 0 });
    expect(await page.textContent('[data-testid="fanout-hint"]')).toContain("1 to 49 children");
    expect(await page.inputValue('[data-testid="fanout-children"]')).toBe("10");
    const progressOf = await recordProgress(page);

    await page.fill('[data-testid="fanout-children"]', "12");
    const rowCount = () => page.$$eval('[data-testid="job-row"]', (rows) => rows.length);
    const rowsBefore = await rowCount();
    // Nothing runs until the parent's subscription is live, so the bar has every child to count.
    await stack.queue.pause();
    let parentId = "";
    try {
      parentId = await clickForNewRow(page, '[data-testid="fanout-submit"]');
      const row = rowSelector(parentId);
      await page.waitForSelector(`${row}[data-live="true"]`, { timeout: 0 });
      // One row for the flow, the parent's: the children are counted on its bar.
      expect(await rowCount()).toBe(rowsBefore + 1);
      expect(await page.getAttribute(row, "data-kind")).toBe("flow");
      expect(await page.textContent(`${row} .job-name`)).toContain("demo.fanout");
      expect(await page.getAttribute(row, "data-state")).toBe("WAITING_CHILDREN");
      expect(await page.textContent(`${row} [data-testid="flow-count"]`)).toBe("0 of 12 children");
    } finally {
      // Resumed whatever happened: the tests after this one need a running queue.
      await stack.queue.resume();
    }
    const row = rowSelector(parentId);

    await page.waitForSelector(`${row}[data-state="COMPLETED"]`, { timeout: 0 });
    expect(await page.textContent(`${row} [data-testid="flow-count"]`)).toBe("12 of 12 children");
    expect(await page.getAttribute(row, "data-children-completed")).toBe("12");
    expect(await page.getAttribute(row, "data-children-total")).toBe("12");
    expect(await page.$eval(`${row} [data-testid="job-progress"]`, (bar) => (bar as HTMLProgressElement).value)).toBe(100);
    // The parent ran after its children and read their results (demo.fanout adds up their steps).
    expect(await page.getAttribute(row, "title")).toBe("Completed: 12 children, 48 steps in all");
    // Live, child by child: the bar went up in steps of one child (k of 12), never back.
    const seen = await progressOf(parentId);
    expect(seen.at(-1)).toBe(100);
    expect(seen.some((v) => v > 0 && v < 100)).toBe(true);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    const steps = new Set(Array.from({ length: 13 }, (_, k) => Math.round((100 * k) / 12)));
    expect(seen.filter((v) => !steps.has(v))).toEqual([]);
    // What the API says of the same flow.
    const parent = await stack.api.runtime.jobs.childrenCounts("demo", parentId);
    expect(parent).toEqual({ processed: 12, pending: 0, failed: 0, ignored: 0 });

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "demo-page-fanout.png"), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it("refuses an N of 0, negative, too big or not a number in the page; sent anyway, shows the server's typed error", {
    timeout: 120_000,
  }, async () => {
    const { page, errors } = await open(pageUrl(openApi));
    await page.waitForSelector("body[data-ready=true]", { timeout: 0 });
    const sent: string[] = [];
    page.on("request", (req) => {
      if (req.method() === "POST" && new URL(req.url()).pathname === "/graphql") sent.push(req.postData() ?? "");
    });
    const rowCount = () => page.$$eval('[data-testid="job-row"]', (rows) => rows.length);
    const rowsBefore = await rowCount();
    const error = '[data-testid="fanout-error"]';

    const refusals: [string, RegExp, boolean][] = [
      ["0", /0 children: a flow needs at least one child\. Enter a whole number from 1 to 49/, true],
      ["-3", /"-3" is negative.*from 1 to 49/, false],
      ["50", /"50" children is more than this server takes: at most 49 \(its MAX_FLOW_NODES is 50, the parent included\)/, true],
      ["99999999999999999999999", /"99999999999999999999999" children is more than this server takes/, false],
      ["ten", /"ten" is not a whole number of children/, false],
      ["2.5", /"2\.5" is not a whole number of children/, false],
      ["1e3", /"1e3" is not a whole number of children/, false],
      ["  ", /How many children\? Enter a whole number from 1 to 49/, false],
      ["7; DROP TABLE jobs", /"7; DROP TABLE jobs" is not a whole number/, false],
    ];
    for (const [typed, message, sendable] of refusals) {
      await page.fill('[data-testid="fanout-children"]', typed);
      expect(await page.isVisible(error)).toBe(false);
      await page.click('[data-testid="fanout-submit"]');
      await page.waitForSelector(`${error}[data-source="client"]:visible`, { timeout: 0 });
      expect(await page.textContent('[data-testid="fanout-error-text"]')).toMatch(message);
      expect(await page.getAttribute('[data-testid="fanout-children"]', "aria-invalid")).toBe("true");
      expect(await page.isVisible('[data-testid="fanout-send-anyway"]')).toBe(sendable);
    }
    // Refused in the page: nothing went to the API, no job appeared.
    expect(sent).toEqual([]);
    expect(await rowCount()).toBe(rowsBefore);

    // Sent anyway, the server refuses it too, all or nothing, with its typed error (ValidationError, its path).
    const serverSays: [string, string | RegExp][] = [
      ["0", "The server refused it (VALIDATION): children: must list at least one child (omit it for a job without children)"],
      ["50", "The server refused it (VALIDATION): children: a flow holds at most 50 jobs (MAX_FLOW_NODES)"],
      // Megabytes of children: refused as a whole request before any resolver.
      ["100000", /^The server refused it \(REQUEST_ENTITY_TOO_LARGE\): Request body too large \(at most \d+ bytes\)$/],
    ];
    for (const [typed, answer] of serverSays) {
      await page.fill('[data-testid="fanout-children"]', typed);
      await page.click('[data-testid="fanout-submit"]');
      await page.waitForSelector(`${error}[data-source="client"]:visible`, { timeout: 0 });
      await page.click('[data-testid="fanout-send-anyway"]');
      await page.waitForSelector(`${error}[data-source="server"]:visible`, { timeout: 0 });
      const text = await page.textContent('[data-testid="fanout-error-text"]');
      if (typeof answer === "string") expect(text).toBe(answer);
      else expect(text).toMatch(answer);
      expect(await page.isVisible('[data-testid="fanout-send-anyway"]')).toBe(false);
    }
    // Three requests, persisted-operation hashes only (PERSISTED_OPERATIONS=only), no document text.
    expect(sent).toHaveLength(3);
    for (const body of sent) {
      const parsed = JSON.parse(body) as { query: unknown; extensions?: { persistedQuery?: { sha256Hash?: unknown } } };
      expect(parsed.query ?? "").toBe("");
      expect(parsed.extensions?.persistedQuery?.sha256Hash).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(await rowCount()).toBe(rowsBefore);

    // A good N after the refusals clears the message and goes through.
    await page.fill('[data-testid="fanout-children"]', "2");
    expect(await page.isVisible(error)).toBe(false);
    const id = await clickForNewRow(page, '[data-testid="fanout-submit"]');
    await page.waitForSelector(`${rowSelector(id)}[data-state="COMPLETED"]`, { timeout: 0 });
    expect(await page.textContent(`${rowSelector(id)} [data-testid="flow-count"]`)).toBe("2 of 2 children");
    // The 413's is the one console error a browser logs for it.
    expect(errors.filter((e) => !e.includes("413"))).toEqual([]);
    await page.close();
  });
});
