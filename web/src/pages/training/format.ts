// Small pure helpers of the Training pages: numbers, durations, job states, ETA and metric grouping.
import type { Schemas } from "../../api/client";

export type Job = Schemas["JobOut"];
export type JobState = Schemas["JobState"];
export type JobProgress = Schemas["JobProgress"];

export const JOB_STATES: JobState[] = ["queued", "running", "cancelling", "cancelled", "succeeded", "failed"];

/** States a job leaves on its own: the list polls and the job page streams while a job is in one. */
export function isActive(state: JobState): boolean {
  return state === "queued" || state === "running" || state === "cancelling";
}

export function isTerminal(state: JobState): boolean {
  return state === "succeeded" || state === "failed" || state === "cancelled";
}

/** POST /cancel is accepted for a queued or running job (a cancelled one is a no-op: not offered). */
export function canCancel(state: JobState): boolean {
  return state === "queued" || state === "running";
}

/** POST /resume is accepted for a cancelled or failed job. */
export function canResume(state: JobState): boolean {
  return state === "cancelled" || state === "failed";
}

export function num(value: unknown): string {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return String(value);
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    return Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3)
      ? value.toExponential(3)
      : value.toPrecision(4).replace(/\.?0+$/, "");
  }
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Seconds as `1:02:03` or `2:03`; `–` when unknown. */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function shortId(id: string): string {
  return id.length > 12 ? id.slice(0, 12) : id;
}

/** The fraction done, 0..1, or null without a total. */
export function fraction(progress: JobProgress): number | null {
  const { step, total } = progress;
  if (typeof step !== "number" || typeof total !== "number" || total <= 0) return null;
  return Math.min(1, Math.max(0, step / total));
}

/** Seconds since the job started, up to its end (or `now` while it runs). */
export function elapsed(job: Pick<Job, "started_at" | "finished_at">, now: number): number | null {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return Math.max(0, (end - Date.parse(job.started_at)) / 1000);
}

/** Seconds to the end: the worker's own `eta_s`, else the rate so far (steps over elapsed time) carried to
 * the total. Null when the job is not running or the figures are missing. */
export function eta(job: Job, now: number): number | null {
  if (job.state !== "running") return null;
  const p = job.progress;
  if (typeof p.eta_s === "number" && Number.isFinite(p.eta_s)) return p.eta_s;
  const seconds = elapsed(job, now);
  if (!seconds || typeof p.step !== "number" || typeof p.total !== "number" || p.step <= 0) return null;
  return ((p.total - p.step) * seconds) / p.step;
}

/** `step / total`, with a multi-phase run's phase: `300 / 1,200 (teacher)`. */
export function progressText(progress: JobProgress): string {
  const { step, total, phase } = progress;
  if (typeof step !== "number") return "–";
  const done = step.toLocaleString("en-US");
  const text = typeof total === "number" ? `${done} / ${total.toLocaleString("en-US")}` : done;
  return phase ? `${text} (${phase})` : text;
}

// --- metrics ---------------------------------------------------------------------------------------------

export interface Point {
  step: number;
  values: Record<string, number>;
}

export interface MetricGroup {
  id: string; // used in test ids: chart-<id>
  title: string;
  keys: string[];
}

const LOSS = /(^|[/_.-])(loss|bce|nll|ce)$|loss/i;
// A figure on another split, or of a distilled DFM job's teacher (teacher_auc, teacher_lr), plots with its kin.
const SPLIT = /^(test|val|valid|validation|eval|train|teacher)_(.+)$/;
// Counters and bookkeeping: no curve worth drawing (they stay in the latest-metrics table).
const HIDDEN = new Set(["step", "epoch", "n", "tokens", "events", "examples", "attempt"]);

/** Which chart a metric goes on: every loss together, a `family/name` family together (an evaluation's
 * compliance/<pref>), a metric with its other splits (auc, test_auc), else its own (different scales). */
function groupOf(key: string): { id: string; title: string } | null {
  const parts = key.split("/");
  // An evaluation's per-model figures (`name@version/compliance/<pref>`): its results table shows them.
  if (parts.length > 2 && parts[0].includes("@")) return null;
  if (LOSS.test(key)) return { id: "loss", title: "Loss" };
  if (/^reward(_|$)/.test(key)) return { id: "reward", title: "Reward" }; // a gating run's reward and its terms
  const slash = key.indexOf("/");
  if (slash > 0) {
    const family = key.slice(0, slash);
    return { id: slug(family), title: family };
  }
  const base = SPLIT.exec(key)?.[2] ?? key;
  if (HIDDEN.has(base)) return null;
  return { id: slug(base), title: base };
}

function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") || "metric";
}

/** The charts for a job's points: loss first, then the rest in the order the metrics first appeared. */
export function metricGroups(points: Point[]): MetricGroup[] {
  const groups = new Map<string, MetricGroup>();
  for (const p of points) {
    for (const key of Object.keys(p.values)) {
      const found = groupOf(key);
      if (!found) continue;
      const { id, title } = found;
      const group = groups.get(id) ?? { id, title, keys: [] };
      if (!group.keys.includes(key)) group.keys.push(key);
      groups.set(id, group);
    }
  }
  return [...groups.values()].sort((a, b) => (a.id === "loss" ? -1 : b.id === "loss" ? 1 : 0));
}

/** The numeric values of a metrics point (a report may carry strings or nulls: not plotted). */
export function numericValues(values: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(values)) if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
  return out;
}

/** `points` with `incoming` merged in: one point per step (a step may report twice, e.g. training figures
 * then an evaluation; a resumed job reports steps again), ordered by step. */
export function mergePoints(points: Point[], incoming: Point[]): Point[] {
  if (!incoming.length) return points;
  const byStep = new Map(points.map((p) => [p.step, p]));
  for (const p of incoming) {
    const seen = byStep.get(p.step);
    byStep.set(p.step, seen ? { step: p.step, values: { ...seen.values, ...p.values } } : p);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

export function asRecord(value: unknown): Record<string, unknown> | null {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}
