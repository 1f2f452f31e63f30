import type { Row } from "./scenario.ts";

const num = (v: number | null) =>
  v === null || Number.isNaN(v)
    ? "-"
    : Number.isInteger(v)
      ? String(v)
      : Math.abs(v) >= 100
        ? v.toFixed(0)
        : Math.abs(v) >= 10
          ? v.toFixed(1)
          : v.toFixed(2);

/** The results as a plain-text table (also pasted into the README). */
export function formatTable(rows: Row[]): string {
  const head = ["scenario", "metric", "project", "baseline", "baseline is", "ratio", "target", "result"];
  const body = rows.map((r) => [
    r.scenario,
    r.metric,
    num(r.project),
    num(r.baseline),
    r.baselineName,
    r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`,
    r.target,
    r.pass === null ? (r.note ?? "-") : r.pass ? "pass" : `FALLS SHORT${r.note ? ` (${r.note})` : ""}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}
