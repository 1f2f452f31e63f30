// The demo page (/demo): enqueue demo.sleep jobs, one progress bar per job from its `jobEvents`
// subscription over graphql-ws, recent failures with Replay. Built on the generated typed client
// (src/client) and nothing else; bundled by esbuild when the API serves it (src/server/demo-page.ts).
import { type Client, createClient } from "graphql-ws/client";
import {
  CreateJobTokenDocument,
  EnqueueJobDocument,
  JobEventsDocument,
  type JobSummaryFragment,
  RecentFailuresDocument,
  type RecentFailuresQuery,
  RecentJobsDocument,
  ReplayJobDocument,
} from "../client/generated/graphql.ts";
import { applyJobEvent, type JobEvent, type JobStatus, progressPercent, TERMINAL_STATES, UNKNOWN_JOB } from "../client/job-status.ts";
import { GraphQLRequestError, request, watch } from "../client/request.ts";
import "./style.css";

const QUEUE = "demo";
const MAX_ROWS = 30;
const KEY_STORAGE = "job-control-demo:api-key";
const endpoint = new URL("/graphql", location.href).href;
const wsEndpoint = endpoint.replace(/^http/, "ws");

/** What a row needs of a job: the enqueue answer, a history row and a replay all have it. */
type JobLike = Pick<JobSummaryFragment, "id" | "queue" | "name" | "state"> &
  Partial<Pick<JobSummaryFragment, "progress" | "failedReason" | "replayOf">> & {
    /** The job's own token, when the enqueue answer carried one (`EnqueueJobSuccess.jobToken`). */
    jobToken?: string;
  };
type Failure = Pick<
  RecentFailuresQuery["failedJobAudits"]["edges"][number]["node"],
  "jobId" | "queue" | "jobName" | "failedReason" | "failedAt"
> & {
  attemptsMade?: number;
};

function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: (Node | string)[]
) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

// --- Credentials ---------------------------------------------------------------------------------------

let apiKey = sessionStorage.getItem(KEY_STORAGE) ?? undefined;
let keyPrompt: Promise<void> | undefined;

const authorization = () => (apiKey ? `Bearer ${apiKey}` : undefined);

/**
 * The credential a job's subscription connects with: never the key. With auth open, none; else the
 * job's own token (good for that one job only): from the enqueue answer (`EnqueueJobSuccess.jobToken`),
 * or, for jobs the page did not enqueue (history, replays), minted with `createJobToken` using the key
 * over HTTP. The one place that decides.
 */
async function subscriptionCredential(job: JobLike): Promise<string | undefined> {
  if (job.jobToken) return `Bearer ${job.jobToken}`;
  if (!apiKey) return undefined;
  const { createJobToken } = await call(CreateJobTokenDocument, { queue: job.queue, id: job.id });
  if (createJobToken.__typename !== "CreateJobTokenSuccess") throw new Error(createJobToken.message);
  job.jobToken = createJobToken.jobToken.token;
  return `Bearer ${job.jobToken}`;
}

function showAuth() {
  byId("auth-status").hidden = !apiKey;
  byId("auth-text").textContent = apiKey ? "Using the API key kept in this tab." : "";
}

/** Shows the key form (once, however many requests were refused) and resolves when a key is given. */
function askForKey(refused: boolean): Promise<void> {
  keyPrompt ??= new Promise<void>((resolve) => {
    const form = byId<HTMLFormElement>("key-form");
    const error = byId("key-error");
    error.hidden = !refused;
    error.textContent = refused ? "That key was refused. Try another." : "";
    form.hidden = false;
    byId<HTMLInputElement>("api-key").focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      apiKey = byId<HTMLInputElement>("api-key").value.trim();
      sessionStorage.setItem(KEY_STORAGE, apiKey);
      for (const client of clients.values()) void client.dispose();
      clients.clear();
      form.hidden = true;
      form.reset();
      keyPrompt = undefined;
      showAuth();
      resolve();
    };
  });
  return keyPrompt;
}

function forgetKey() {
  apiKey = undefined;
  sessionStorage.removeItem(KEY_STORAGE);
  showAuth();
  location.reload();
}

function unauthenticated(err: unknown): boolean {
  return err instanceof GraphQLRequestError && (err.status === 401 || err.code === "UNAUTHENTICATED");
}

/** `request` with the page's key; a refused or missing key asks for one and tries again. */
async function call<R, V>(document: Parameters<typeof request<R, V>>[1], variables: V): Promise<R> {
  for (;;) {
    try {
      return await request(endpoint, document, variables, { authorization: authorization() });
    } catch (err) {
      if (!unauthenticated(err)) throw err;
      await askForKey(apiKey !== undefined);
    }
  }
}

// --- Subscriptions -------------------------------------------------------------------------------------

/** One graphql-ws connection per credential (one in all while the key is used; one per job token). */
const clients = new Map<string, Client>();

function clientFor(credential: string | undefined): Client {
  const key = credential ?? "";
  let client = clients.get(key);
  if (!client) {
    client = createClient({
      url: wsEndpoint,
      connectionParams: credential ? { authorization: credential } : {},
      lazy: true,
      retryAttempts: 10,
    });
    clients.set(key, client);
  }
  return client;
}

// --- Job rows ------------------------------------------------------------------------------------------

interface Row {
  status: JobStatus;
  li: HTMLLIElement;
  progress: HTMLProgressElement;
  percent: HTMLElement;
  state: HTMLElement;
  watching: boolean;
}

const rows = new Map<string, Row>();
const jobList = byId<HTMLUListElement>("jobs");

/** Shows the row's status: `data-state`, the bar's `value`, the reason of a failure as a tooltip. */
function render(row: Row) {
  const { state, percent, failedReason } = row.status;
  if (state) {
    row.li.dataset.state = state;
    row.state.textContent = state;
  }
  if (percent !== undefined) {
    row.progress.value = percent;
    row.progress.setAttribute("value", String(percent));
    row.percent.textContent = `${percent} %`;
  }
  if (failedReason) row.li.title = failedReason;
}

function updateCounts() {
  byId("jobs-empty").hidden = rows.size > 0;
  byId("jobs-count").textContent = rows.size > 0 ? `(${rows.size})` : "";
}

/** Adds the job's row (newest on top) or updates it; the oldest finished rows go past MAX_ROWS. */
function showJob(job: JobLike, position: "top" | "bottom" = "top"): Row {
  let row = rows.get(job.id);
  if (!row) {
    const progress = element("progress", { max: 100, value: 0 });
    progress.dataset.testid = "job-progress";
    progress.setAttribute("value", "0");
    const name = element("span", { className: "job-name", title: `${job.queue}.${job.name} #${job.id}` }, `${job.queue}.${job.name}`);
    name.append(element("small", {}, job.replayOf ? `#${job.id} · replay of #${job.replayOf.id}` : `#${job.id}`));
    const li = element("li", {}, name, progress);
    li.dataset.testid = "job-row";
    li.dataset.jobId = job.id;
    row = {
      status: UNKNOWN_JOB,
      li,
      progress,
      percent: element("span", { className: "percent" }, "–"),
      state: element("span", { className: "state" }),
      watching: false,
    };
    li.append(row.percent, row.state);
    rows.set(job.id, row);
    if (position === "top") jobList.prepend(li);
    else jobList.append(li);
    for (const [id, old] of [...rows].reverse()) {
      if (rows.size <= MAX_ROWS) break;
      if (old.watching) continue;
      old.li.remove();
      rows.delete(id);
    }
  }
  row.status = {
    ...row.status,
    state: job.state,
    progress: job.progress ?? row.status.progress,
    percent: progressPercent(job.progress) ?? row.status.percent,
    failedReason: job.failedReason ?? row.status.failedReason,
  };
  render(row);
  updateCounts();
  return row;
}

function applyEvent(row: Row, event: JobEvent) {
  row.status = applyJobEvent(row.status, event);
  // The subscription is live from its first event (the SNAPSHOT) until it completes.
  row.li.dataset.live = "true";
  render(row);
}

/** Follows the job's events until its terminal one; a failure refreshes the failures list. */
async function watchJob(job: JobLike) {
  const row = showJob(job);
  if (row.watching || TERMINAL_STATES.has(job.state)) return;
  row.watching = true;
  try {
    for (;;) {
      try {
        for await (const data of watch(clientFor(await subscriptionCredential(job)), JobEventsDocument, { queue: job.queue, id: job.id })) {
          applyEvent(row, data.jobEvents);
        }
        break;
      } catch (err) {
        if (!unauthenticated(err)) throw err;
        // A refused token (expired, its key revoked) is not tried again: a new one comes from the key.
        job.jobToken = undefined;
        await askForKey(apiKey !== undefined);
      }
    }
  } catch (err) {
    row.li.title = err instanceof Error ? err.message : String(err);
  } finally {
    row.watching = false;
    delete row.li.dataset.live;
  }
  if (row.status.state === "FAILED") {
    // Shown at once from the job's own events; the worker writes the audit row a moment later.
    failedHere.set(job.id, {
      jobId: job.id,
      queue: job.queue,
      jobName: job.name,
      failedReason: row.status.failedReason ?? "",
      failedAt: new Date().toISOString(),
    });
    void loadFailures();
  }
}

// --- Failures ------------------------------------------------------------------------------------------

const failureList = byId<HTMLUListElement>("failures");

function failureRow(failure: Failure): HTMLLIElement {
  const replay = element("button", { type: "button", className: "secondary" }, "Replay");
  replay.dataset.testid = "replay-button";
  const li = element(
    "li",
    {},
    element("span", { className: "job-name" }, `${failure.queue}.${failure.jobName} `, element("small", {}, `#${failure.jobId}`)),
    replay,
    element("span", { className: "reason" }, failure.failedReason),
    element(
      "span",
      { className: "meta" },
      new Date(failure.failedAt).toLocaleTimeString() + (failure.attemptsMade === undefined ? "" : ` · ${failure.attemptsMade} attempt(s)`),
    ),
  );
  li.dataset.testid = "failure-row";
  li.dataset.jobId = failure.jobId;
  replay.onclick = async () => {
    replay.disabled = true;
    replay.textContent = "Replaying…";
    try {
      const { replayJob } = await call(ReplayJobDocument, { queue: failure.queue, id: failure.jobId });
      if (replayJob.__typename === "JobActionSuccess") {
        replay.textContent = `Replayed as #${replayJob.job.id}`;
        void watchJob(replayJob.job);
      } else {
        replay.textContent = "Replay";
        replay.disabled = false;
        li.querySelector(".reason")?.append(` (replay refused: ${replayJob.message})`);
      }
    } catch (err) {
      replay.textContent = "Replay";
      replay.disabled = false;
      li.querySelector(".reason")?.append(` (replay failed: ${err instanceof Error ? err.message : String(err)})`);
    }
  };
  return li;
}

/** Failures of jobs this page watched whose audit row the API did not list yet. */
const failedHere = new Map<string, Failure>();

let failuresLoaded: Promise<void> = Promise.resolve();

/** Refreshes the failures list; one refresh at a time, so two never build rows for the same job. */
function loadFailures(): Promise<void> {
  failuresLoaded = failuresLoaded.then(refreshFailures, refreshFailures);
  return failuresLoaded;
}

async function refreshFailures() {
  const { failedJobAudits } = await call(RecentFailuresDocument, { queue: QUEUE, first: 8 });
  const listed = failedJobAudits.edges.map(({ node }) => node);
  for (const failure of listed) failedHere.delete(failure.jobId);
  const failures = [...[...failedHere.values()].reverse(), ...listed].slice(0, 8);
  const shown = new Map([...failureList.children].map((li) => [(li as HTMLElement).dataset.jobId, li]));
  // Rows already shown keep their Replay button's state.
  failureList.replaceChildren(...failures.map((failure) => shown.get(failure.jobId) ?? failureRow(failure)));
  byId("failures-empty").hidden = failures.length > 0;
}

// --- Enqueue -------------------------------------------------------------------------------------------

async function enqueue(name: "sleep" | "fail", data: Record<string, unknown>, attempts?: number) {
  const error = byId("enqueue-error");
  error.hidden = true;
  const { enqueueJob } = await call(EnqueueJobDocument, { input: { queue: QUEUE, name, data, attempts } });
  switch (enqueueJob.__typename) {
    case "EnqueueJobSuccess": {
      // The job's own token subscribes to its events (see subscriptionCredential).
      void watchJob({ ...enqueueJob.job, jobToken: enqueueJob.jobToken?.token });
      return;
    }
    case "ValidationError":
      error.textContent = enqueueJob.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
      break;
    default:
      error.textContent = enqueueJob.message;
  }
  error.hidden = false;
}

function reportError(err: unknown) {
  const error = byId("enqueue-error");
  error.textContent = err instanceof Error ? err.message : String(err);
  error.hidden = false;
}

byId<HTMLFormElement>("enqueue-form").onsubmit = (event) => {
  event.preventDefault();
  const steps = byId<HTMLInputElement>("steps").valueAsNumber;
  const stepMs = byId<HTMLInputElement>("step-ms").valueAsNumber;
  enqueue("sleep", { steps, stepMs }).catch(reportError);
};
byId("enqueue-fail").onclick = () => {
  enqueue("fail", { message: "Demo failure: enqueued from /demo to fail" }, 1).catch(reportError);
};
byId("forget-key").onclick = forgetKey;

// --- Start ---------------------------------------------------------------------------------------------

async function start() {
  showAuth();
  const { jobs } = await call(RecentJobsDocument, { filter: { queue: QUEUE }, first: 10 });
  for (const { node } of jobs.edges) {
    showJob(node, "bottom");
    if (!TERMINAL_STATES.has(node.state)) void watchJob(node);
  }
  await loadFailures();
  document.body.dataset.ready = "true";
}

start().catch(reportError);
