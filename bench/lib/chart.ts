// Hand-written SVG: latency percentiles per scenario (left) and fan-out growth per level (right).
interface Report {
  mode: string;
  date: string;
  scenarios: Record<string, { details: Record<string, unknown> }>;
}

type Pct = { p50: number; p95: number; p99: number };
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

function bars(series: { label: string; pct: Pct }[], x0: number, y0: number, w: number, h: number): string {
  const max = Math.max(1, ...series.flatMap((s) => [s.pct.p99].filter(Number.isFinite)));
  const group = w / Math.max(1, series.length);
  const colors = { p50: "#4e79a7", p95: "#f28e2b", p99: "#e15759" };
  let out = `<text x="${x0}" y="${y0 - 8}" font-weight="bold">Latency percentiles (ms)</text>`;
  series.forEach((s, i) => {
    (["p50", "p95", "p99"] as const).forEach((k, j) => {
      const v = Number.isFinite(s.pct[k]) ? s.pct[k] : 0;
      const bh = (v / max) * h;
      const x = x0 + i * group + 6 + j * ((group - 12) / 3);
      out += `<rect x="${x.toFixed(1)}" y="${(y0 + h - bh).toFixed(1)}" width="${((group - 12) / 3 - 2).toFixed(1)}" height="${bh.toFixed(1)}" fill="${colors[k]}"><title>${esc(s.label)} ${k}: ${v.toFixed(2)} ms</title></rect>`;
      out += `<text x="${(x + 2).toFixed(1)}" y="${(y0 + h - bh - 3).toFixed(1)}" font-size="9">${v.toFixed(1)}</text>`;
    });
    out += `<text x="${(x0 + i * group + group / 2).toFixed(1)}" y="${y0 + h + 14}" font-size="10" text-anchor="middle">${esc(s.label)}</text>`;
  });
  out += `<line x1="${x0}" y1="${y0 + h}" x2="${x0 + w}" y2="${y0 + h}" stroke="#333"/>`;
  out += Object.entries(colors)
    .map(
      ([k, c], i) =>
        `<rect x="${x0 + i * 50}" y="${y0 + h + 24}" width="10" height="10" fill="${c}"/><text x="${x0 + i * 50 + 14}" y="${y0 + h + 33}" font-size="10">${k}</text>`,
    )
    .join("");
  return out;
}

function lines(
  levels: { subscribers: number; latency: Pct; kbPerSubscriber: number; lag: Pct }[],
  x0: number,
  y0: number,
  w: number,
  h: number,
): string {
  let out = `<text x="${x0}" y="${y0 - 8}" font-weight="bold">Fan-out: by subscribers</text>`;
  if (levels.length === 0) return `${out}<text x="${x0}" y="${y0 + 20}">no fan-out data</text>`;
  const xs = levels.map((l) => l.subscribers);
  const xMax = Math.max(...xs);
  const series = [
    { name: "delivery p99 ms", color: "#e15759", values: levels.map((l) => l.latency.p99) },
    { name: "loop lag p99 ms", color: "#76b7b2", values: levels.map((l) => l.lag.p99) },
    { name: "KB / subscriber", color: "#59a14f", values: levels.map((l) => l.kbPerSubscriber) },
  ];
  const yMax = Math.max(1, ...series.flatMap((s) => s.values.filter(Number.isFinite)));
  const px = (x: number) => x0 + (x / xMax) * w;
  const py = (y: number) => y0 + h - (Math.max(0, y) / yMax) * h;
  out += `<line x1="${x0}" y1="${y0 + h}" x2="${x0 + w}" y2="${y0 + h}" stroke="#333"/><line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 + h}" stroke="#333"/>`;
  out += `<text x="${x0 - 4}" y="${y0 + 4}" font-size="9" text-anchor="end">${yMax.toFixed(0)}</text>`;
  for (const x of xs)
    out += `<text x="${px(x).toFixed(1)}" y="${y0 + h + 14}" font-size="10" text-anchor="middle">${x >= 1000 ? `${x / 1000}k` : x}</text>`;
  series.forEach((s, i) => {
    const pts = s.values.map((v, j) => `${px(xs[j] ?? 0).toFixed(1)},${py(Number.isFinite(v) ? v : 0).toFixed(1)}`).join(" ");
    out += `<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2"/>`;
    s.values.forEach((v, j) => {
      out += `<circle cx="${px(xs[j] ?? 0).toFixed(1)}" cy="${py(Number.isFinite(v) ? v : 0).toFixed(1)}" r="3" fill="${s.color}"><title>${s.name} at ${xs[j]}: ${v.toFixed(2)}</title></circle>`;
    });
    out += `<rect x="${x0 + i * 120}" y="${y0 + h + 24}" width="10" height="10" fill="${s.color}"/><text x="${x0 + i * 120 + 14}" y="${y0 + h + 33}" font-size="10">${s.name}</text>`;
  });
  return out;
}

export function renderChart(report: Report): string {
  const d = (name: string) => report.scenarios[name]?.details ?? {};
  const series: { label: string; pct: Pct }[] = [];
  const push = (label: string, v: unknown) => {
    if (v && typeof v === "object" && "p50" in v) series.push({ label, pct: v as Pct });
  };
  push("bare http", d("graphql-layer").bareHttp);
  push("{ __typename }", d("graphql-layer").trivial);
  push("enqueueJob", d("enqueue-job").enqueue);
  push("Queue.add", d("enqueue-job").rawQueueAdd);
  push("QueueEvents", d("progress-latency").rawQueueEvents);
  push("graphql-ws", (d("progress-latency").graphqlWs as { latency?: Pct } | undefined)?.latency);
  push("pub/sub", d("progress-latency").rawRedisPubSub);
  const levels = (d("fan-out").levels as Parameters<typeof lines>[0] | undefined) ?? [];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="340" font-family="sans-serif" font-size="12">
<rect width="1000" height="340" fill="white"/>
<text x="20" y="20" font-size="13">npm run bench (${esc(report.mode)}), ${esc(report.date)}</text>
${bars(series, 30, 60, 540, 200)}
${lines(levels, 630, 60, 340, 200)}
</svg>
`;
}
