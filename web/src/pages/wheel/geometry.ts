// The wheel's geometry: wedges sized by probability, clockwise from the pointer at the top.
import type { Distribution } from "./api";
import { clip, percent, tokenLabel, tokenSpoken, type Token } from "./tokens";

export interface Wedge {
  key: string;
  /** A token above the threshold, or null for the Other bucket. */
  token: Token | null;
  probability: number;
  /** Degrees clockwise from the top. */
  start: number;
  end: number;
  label: string;
  spoken: string;
  color: string;
}

// Light fills, so the dark labels keep a high contrast on every wedge.
const FILLS = [
  "#bfdbfe", "#fde68a", "#bbf7d0", "#fecaca", "#ddd6fe", "#a5f3fc", "#fed7aa", "#f5d0fe", "#d9f99d", "#c7d2fe",
];
export const OTHER_FILL = "#d1d5db";

export function wedgesOf(dist: Distribution): Wedge[] {
  const parts: Omit<Wedge, "start" | "end">[] = dist.above.map((p, i) => ({
    key: `t${p.token.id}`,
    token: p.token,
    probability: p.probability,
    label: tokenLabel(p.token),
    spoken: tokenSpoken(p.token),
    color: FILLS[i % FILLS.length],
  }));
  if (dist.other.count > 0 || parts.length === 0)
    parts.push({
      key: "other",
      token: null,
      probability: dist.other.probability,
      label: "Other",
      spoken: `Other, ${dist.other.count} tokens`,
      color: OTHER_FILL,
    });
  const total = parts.reduce((s, p) => s + p.probability, 0) || 1;
  let at = 0;
  return parts.map((p) => {
    const start = at;
    at += (p.probability / total) * 360;
    return { ...p, start, end: at };
  });
}

function point(angle: number, r: number): [number, number] {
  const rad = (angle * Math.PI) / 180;
  return [r * Math.sin(rad), -r * Math.cos(rad)];
}

/** The SVG path of a wedge of radius r centred on (0, 0). */
export function wedgePath(w: Wedge, r: number): string {
  const sweep = w.end - w.start;
  if (sweep >= 359.999) return `M 0 ${-r} A ${r} ${r} 0 1 1 0 ${r} A ${r} ${r} 0 1 1 0 ${-r} Z`;
  const [x0, y0] = point(w.start, r);
  const [x1, y1] = point(w.end, r);
  const large = sweep > 180 ? 1 : 0;
  return `M 0 0 L ${x0.toFixed(3)} ${y0.toFixed(3)} A ${r} ${r} 0 ${large} 1 ${x1.toFixed(3)} ${y1.toFixed(3)} Z`;
}

/** Where a label sits: along the wedge's middle radius, never upside down once the wheel is at `rotation`. */
export function labelTransform(w: Wedge, r: number, rotation: number): { transform: string; anchor: "start" | "end" } {
  const mid = (w.start + w.end) / 2;
  const onLeft = (((mid + rotation) % 360) + 360) % 360 > 180;
  const base = `rotate(${(mid - 90).toFixed(3)})`;
  return onLeft
    ? { transform: `${base} translate(${r}, 0) rotate(180)`, anchor: "start" }
    : { transform: `${base} translate(${r}, 0)`, anchor: "end" };
}

/** The label drawn in a wedge of this sweep, clipped to fit, and its font size (none for slivers). */
export function labelFor(w: Wedge): { text: string; size: number } | null {
  const sweep = w.end - w.start;
  if (sweep < 6) return null;
  const size = sweep >= 30 ? 12 : sweep >= 14 ? 10 : 8;
  return { text: clip(w.label, size === 12 ? 11 : 12), size };
}

/** The rotation (degrees, increasing: the wheel turns clockwise) that brings `target` degrees under the
 * pointer after a few whole turns from `current`. */
export function landingRotation(current: number, target: number, turns = 3): number {
  const mod = (((current + target) % 360) + 360) % 360;
  return current - mod + 360 * turns;
}

/** A point inside the wedge (not its exact edge), varied by seed so spins do not all land dead centre. */
export function landingAngle(w: Wedge, seed: number): number {
  const f = ((Math.sin(seed * 12.9898) * 43758.5453) % 1 + 1) % 1; // a cheap, deterministic jitter
  return w.start + (w.end - w.start) * (0.25 + 0.5 * f);
}

export function describeWedge(w: Wedge): string {
  return `${w.spoken}, ${percent(w.probability)}`;
}
