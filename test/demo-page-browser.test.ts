import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RunningProcess, startApi } from "../src/testing/processes.ts";
import { startTestStack, type TestStack } from "../src/testing/stack.ts";

// The demo page in a real browser (Debian's chromium, driven by playwright-core) against a real API
// process and a real worker process: enqueue, a bar that reaches 100 %, a failure and its replay.

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
    startApi({ ...stack.env, DEMO_PAGE: "true", PERSISTED_OPERATIONS: "only" }),
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

  it("with auth on, asks for the key once, keeps it for the tab, and asks again for a wrong one", { timeout: 120_000 }, async () => {
    const url = pageUrl(authApi);
    const { page, errors } = await open(url);
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

    // A reload in the same tab keeps the key: no second prompt.
    await page.reload();
    await page.waitForSelector("body[data-ready=true]", { timeout: 0 });
    expect(await page.isVisible('[data-testid="key-form"]')).toBe(false);
    // The refused key's 401 is the one console error a browser logs for it.
    expect(errors.filter((e) => !e.includes("401"))).toEqual([]);
    await page.close();
  });
});
