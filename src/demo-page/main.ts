// The demo page (/demo): enqueue demo.sleep jobs, one progress bar per job from its `jobEvents`
// subscription over graphql-ws; a fan-out (a demo.fanout flow with N demo.sleep children, one bar for
// the parent from its CHILD_COMPLETED / CHILD_FAILED events); recent failures with Replay. Built on
// the generated typed client (src/client) and nothing else; bundled by esbuild when the API serves it
// (src/server/demo-page.ts).
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { type Client, createClient } from "graphql-ws/client";
import {
  CreateJobTokenDocument,
  EnqueueFanoutDocument,
  EnqueueJobDocument,
  type FlowCountsFragment,
  FlowEventsDocument,
  type FlowEventsSubscription,
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
  Partial<Pick<JobSummaryFragment, "progress" | "failedReason" | "replayOf" | "parent">> & {
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
  /** A flow parent's row (demo.fanout): its children's counts drive the bar, not the job's progress. */
  flow?: { counts: FlowCountsFragment | undefined; label: HTMLElement };
}

const rows = new Map<string, Row>();
const jobList = byId<HTMLUListElement>("jobs");

const childrenTotal = (c: FlowCountsFragment) => c.processed + c.pending + c.failed + c.ignored;

/** A flow parent's bar: the share of its children that completed ("7 of 10 children"). */
function renderFlow(row: Row, counts: FlowCountsFragment | undefined, label: HTMLElement) {
  if (!counts) {
    label.textContent = "children: …";
    return;
  }
  const total = childrenTotal(counts);
  const percent = total > 0 ? Math.round((100 * counts.processed) / total) : 0;
  row.progress.value = percent;
  row.progress.setAttribute("value", String(percent));
  row.percent.textContent = `${percent} %`;
  row.li.dataset.childrenCompleted = String(counts.processed);
  row.li.dataset.childrenTotal = String(total);
  const failed = counts.failed + counts.ignored;
  label.textContent = `${counts.processed} of ${total} children${failed > 0 ? ` · ${failed} failed` : ""}`;
}

/** Shows the row's status: `data-state`, the bar's `value`, the reason of a failure as a tooltip. */
function render(row: Row) {
  const { state, percent, failedReason } = row.status;
  if (state) {
    row.li.dataset.state = state;
    row.state.textContent = state;
  }
  if (row.flow) {
    renderFlow(row, row.flow.counts, row.flow.label);
  } else if (percent !== undefined) {
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

/**
 * Runs `each` over the job's subscription to `document` until the server completes it (after the
 * job's terminal event); the row's tooltip tells an error. A refused token is replaced via the key.
 */
async function follow<R>(
  job: JobLike,
  row: Row,
  document: TypedDocumentNode<R, { queue: string; id: string }>,
  each: (data: R) => void,
): Promise<void> {
  row.watching = true;
  try {
    for (;;) {
      try {
        for await (const data of watch(clientFor(await subscriptionCredential(job)), document, { queue: job.queue, id: job.id })) {
          each(data);
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
}

/** Follows the job's events until its terminal one; a failure refreshes the failures list. */
async function watchJob(job: JobLike) {
  const row = showJob(job);
  if (row.watching || TERMINAL_STATES.has(job.state)) return;
  await follow(job, row, JobEventsDocument, (data) => applyEvent(row, data.jobEvents));
  noteFailure(job, row);
}

/**
 * Follows a flow parent: its state as any job's, its bar from the children's counts that its SNAPSHOT
 * and each CHILD_COMPLETED / CHILD_FAILED carry. A finished parent too: its SNAPSHOT has the counts.
 */
async function watchFlow(job: JobLike, counts?: FlowCountsFragment) {
  const row = showJob(job);
  if (!row.flow) {
    const label = element("span", { className: "flow-count" });
    label.dataset.testid = "flow-count";
    const bar = element("div", { className: "flow-bar" });
    row.progress.replaceWith(bar);
    bar.append(row.progress, label);
    row.li.dataset.kind = "flow";
    row.flow = { counts, label };
    render(row);
  }
  if (row.watching) return;
  await follow(job, row, FlowEventsDocument, (data) => applyFlowEvent(row, data.jobEvents));
  noteFailure(job, row);
}

function applyFlowEvent(row: Row, event: FlowEventsSubscription["jobEvents"]) {
  const counts = event.childrenCounts ?? event.job?.childrenCounts;
  const known = row.flow?.counts;
  // Counts only grow while a flow runs; a SNAPSHOT's, read a moment after the events that follow
  // it were written, can be ahead of them: a bar never goes back.
  if (row.flow && counts && (!known || finishedChildren(counts) >= finishedChildren(known))) row.flow.counts = counts;
  applyEvent(row, event);
  const result = event.job?.result as { children?: unknown; steps?: unknown } | null | undefined;
  if (event.type === "COMPLETED" && result && typeof result.children === "number") {
    row.li.title = `Completed: ${result.children} children, ${String(result.steps)} steps in all`;
  }
}

const finishedChildren = (c: FlowCountsFragment) => c.processed + c.failed + c.ignored;

/** A job this page watched that failed goes to the failures list at once. */
function noteFailure(job: JobLike, row: Row) {
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

// --- Fan-out (a flow) ------------------------------------------------------------------------------------

/** What each child of a fan-out does: 4 steps of 250 ms. */
const CHILD_DATA = { steps: 4, stepMs: 250 };
/** The API's MAX_FLOW_NODES, which it writes into the page (src/server/demo-page.ts); the parent is one of them. */
const maxFlowNodes = (() => {
  const content = document.querySelector<HTMLMetaElement>('meta[name="max-flow-nodes"]')?.content ?? "";
  return /^\d+$/.test(content) && Number(content) >= 1 ? Number(content) : 1000;
})();
const maxChildren = maxFlowNodes - 1;
/** "Send anyway" builds at most this many children: past it the page would only hurt itself. */
const SEND_ANYWAY_MAX = 100_000;

type ChildrenCheck = { n: number } | { problem: string; anyway?: number };

/** The field as typed, for a message: cut when long. */
const shown = (text: string) => JSON.stringify(text.length > 24 ? `${text.slice(0, 24)}…` : text);

/** N as the field holds it: a whole number of children from 1 to what the server takes, or why not. */
function checkChildren(raw: string, most: number): ChildrenCheck {
  const text = raw.trim();
  const range = `a whole number from 1 to ${most}`;
  if (text === "") return { problem: `How many children? Enter ${range}.` };
  if (/^[-\u2212]\s*[\d.]/.test(text))
    return { problem: `${shown(text)} is negative: a flow cannot have fewer than no children. Enter ${range}.` };
  if (!/^\d+$/.test(text)) return { problem: `${shown(text)} is not a whole number of children. Enter ${range}.` };
  const n = Number(text);
  if (n === 0) return { problem: `0 children: a flow needs at least one child. Enter ${range}.`, anyway: 0 };
  if (n > most) {
    return {
      problem: `${shown(text)} children is more than this server takes: at most ${most} (its MAX_FLOW_NODES is ${most + 1}, the parent included).`,
      ...(n <= SEND_ANYWAY_MAX ? { anyway: n } : {}),
    };
  }
  return { n };
}

const fanoutInput = byId<HTMLInputElement>("fanout-children");
const fanoutError = byId("fanout-error");
const sendAnyway = byId<HTMLButtonElement>("fanout-send-anyway");

function fanoutProblem(message: string | undefined, source: "client" | "server" = "client", anyway?: number) {
  fanoutError.hidden = message === undefined;
  fanoutError.dataset.source = source;
  byId("fanout-error-text").textContent = message ?? "";
  sendAnyway.hidden = anyway === undefined;
  sendAnyway.onclick =
    anyway === undefined
      ? null
      : () => {
          enqueueFanout(anyway).catch(fanoutFailed);
        };
  if (message === undefined) fanoutInput.removeAttribute("aria-invalid");
  else if (source === "client") fanoutInput.setAttribute("aria-invalid", "true");
}

/** A request that failed: refused by the server as a whole (413, VALIDATION before the resolver) or not answered. */
function fanoutFailed(err: unknown) {
  if (err instanceof GraphQLRequestError && err.status !== 0) {
    fanoutProblem(`The server refused it (${err.code ?? `HTTP ${err.status}`}): ${err.message}`, "server");
  } else {
    fanoutProblem(`Could not send it: ${err instanceof Error ? err.message : String(err)}`, "server");
  }
}

/** Enqueues demo.fanout with `n` demo.sleep children through enqueueFlow and follows the parent. */
async function enqueueFanout(n: number) {
  fanoutProblem(undefined);
  const children = Array.from({ length: n }, () => ({ queue: QUEUE, name: "sleep", data: CHILD_DATA }));
  const { enqueueFlow } = await call(EnqueueFanoutDocument, {
    input: { queue: QUEUE, name: "fanout", data: { label: `demo page: ${n} children` }, children },
  });
  switch (enqueueFlow.__typename) {
    case "EnqueueFlowSuccess":
      void watchFlow({ ...enqueueFlow.job, jobToken: enqueueFlow.jobToken?.token }, { processed: 0, pending: n, failed: 0, ignored: 0 });
      return;
    case "ValidationError":
      fanoutProblem(
        `The server refused it (${enqueueFlow.code}): ${enqueueFlow.issues.map((i) => `${i.path.join(".") || "input"}: ${i.message}`).join("; ")}`,
        "server",
      );
      return;
    default:
      fanoutProblem(`The server refused it (${enqueueFlow.code}): ${enqueueFlow.message}`, "server");
  }
}

byId("fanout-hint").textContent = `1 to ${maxChildren} children: this server's MAX_FLOW_NODES is ${maxFlowNodes}, the parent included.`;
fanoutInput.oninput = () => fanoutProblem(undefined);
byId<HTMLFormElement>("fanout-form").onsubmit = (event) => {
  event.preventDefault();
  const check = checkChildren(fanoutInput.value, maxChildren);
  if ("problem" in check) {
    fanoutProblem(check.problem, "client", check.anyway);
    return;
  }
  enqueueFanout(check.n).catch(fanoutFailed);
};

// --- Start ---------------------------------------------------------------------------------------------

async function start() {
  showAuth();
  const { jobs } = await call(RecentJobsDocument, { filter: { queue: QUEUE }, first: 30 });
  // A flow's children are counted on their parent's bar: no row of their own.
  for (const { node } of jobs.edges.filter((e) => !e.node.parent).slice(0, 10)) {
    if (node.name === "fanout") {
      showJob(node, "bottom");
      void watchFlow(node);
      continue;
    }
    showJob(node, "bottom");
    if (!TERMINAL_STATES.has(node.state)) void watchJob(node);
  }
  await loadFailures();
  document.body.dataset.ready = "true";
}

start().catch(reportError);
