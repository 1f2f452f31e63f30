/**
 * OpenTelemetry traces, on only when OTEL_EXPORTER_OTLP_ENDPOINT is set. The SDK is loaded here with
 * `import()`, so a process with tracing off never loads it: BullMQ gets no `telemetry` option (its
 * `trace()` then calls straight through) and the HTTP server no wrapper.
 *
 * With it on, one trace follows a job: the API's SERVER span of the HTTP request (continuing the
 * caller's W3C `traceparent` when there is one), BullMQ's PRODUCER span `add <queue>.<name>` inside
 * it, and, in the worker, BullMQ's CONSUMER span `process <queue>` around the processor, whose
 * parent comes from the context BullMQ stores in the job (`opts.telemetry.metadata`). Spans go out
 * in batches over OTLP/HTTP (JSON); when the collector is slow or gone, at most MAX_QUEUED spans
 * wait and the rest are dropped, so neither enqueue nor job processing waits for it.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Telemetry } from "bullmq";
import type { Logger } from "./logger.ts";

export interface TracingOptions {
  /** OTLP/HTTP base URL; spans go to `<endpoint>/v1/traces`. */
  endpoint: string;
  headers: Record<string, string>;
  serviceName: string;
  /** Share of new root traces recorded (parent-based: a sampled caller's trace is always continued). */
  sampleRatio: number;
  log: Logger;
}

export interface Tracing {
  /** For BullMQ's Queue and Worker `telemetry` option (bullmq-otel). */
  telemetry: Telemetry;
  /** Runs `handle` inside a SERVER span for this HTTP request; the span ends when the response does. */
  serve(req: IncomingMessage, res: ServerResponse, handle: () => void): void;
  /** Sets attributes on the active span (if any): the GraphQL operation's name and type. */
  annotate(attributes: Record<string, string>): void;
  /** Ends tracing: exports what is queued (waiting at most `timeoutMs`), then stops the exporter. */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** Spans held for export at most; past it new ones are dropped (the collector is slow or down). */
export const MAX_QUEUED = 2048;
/** How long one export may take before it is abandoned. */
const EXPORT_TIMEOUT_MS = 5_000;

export async function startTracing(options: TracingOptions): Promise<Tracing> {
  const [api, { AsyncLocalStorageContextManager }, { W3CTraceContextPropagator }, { resourceFromAttributes }, sdk, otlp, { BullMQOtel }] =
    await Promise.all([
      import("@opentelemetry/api"),
      import("@opentelemetry/context-async-hooks"),
      import("@opentelemetry/core"),
      import("@opentelemetry/resources"),
      import("@opentelemetry/sdk-trace"),
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("bullmq-otel"),
    ]);
  const { SpanKind, SpanStatusCode, context, propagation, trace } = api;

  // Export failures (collector down, refused headers) reach the log, at most one line a minute.
  let lastComplaint = 0;
  api.diag.setLogger(
    {
      error: (message, ...args) => {
        if (Date.now() - lastComplaint < 60_000) return;
        lastComplaint = Date.now();
        options.log.warn("trace export failed (spans are dropped while it fails)", {
          err: `${message} ${args.map(String).join(" ")}`.trim(),
        });
      },
      warn: () => {},
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    api.DiagLogLevel.ERROR,
  );

  const exporter = new otlp.OTLPTraceExporter({
    url: `${options.endpoint.replace(/\/+$/, "")}/v1/traces`,
    headers: options.headers,
    timeoutMillis: EXPORT_TIMEOUT_MS,
  });
  const provider = new sdk.TracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName }),
    sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(options.sampleRatio) }),
    spanProcessors: [
      new sdk.BatchSpanProcessor({
        exporter,
        maxQueueSize: MAX_QUEUED,
        maxExportBatchSize: 512,
        scheduledDelayMillis: 1_000,
        exportTimeoutMillis: EXPORT_TIMEOUT_MS,
      }),
    ],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  const tracer = trace.getTracer("job-control-api");

  return {
    telemetry: new BullMQOtel({ tracerName: "bullmq" }) as Telemetry,
    serve(req, res, handle) {
      const parent = propagation.extract(context.active(), req.headers);
      const path = (req.url ?? "/").split("?", 1)[0] as string;
      const span = tracer.startSpan(
        `${req.method} ${path}`,
        {
          kind: SpanKind.SERVER,
          attributes: { "http.request.method": req.method ?? "", "url.path": path, "http.route": path },
        },
        parent,
      );
      res.once("close", () => {
        span.setAttribute("http.response.status_code", res.statusCode);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      });
      context.with(trace.setSpan(parent, span), handle);
    },
    annotate(attributes) {
      trace.getActiveSpan()?.setAttributes(attributes);
    },
    async shutdown(timeoutMs = EXPORT_TIMEOUT_MS) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        provider.shutdown().catch(() => {}),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
