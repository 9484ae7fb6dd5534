import type { JobState } from "./format";

/** A job state as a coloured pill; the word itself carries the meaning (not only the colour). */
export function StateBadge({ state }: { state: JobState | string }) {
  return (
    <span className={`badge ${state}`} data-testid="job-state">
      {state}
    </span>
  );
}

/** A progress bar with its numbers as text (the bar alone is not announced well everywhere). */
export function ProgressBar({ value, label }: { value: number | null; label: string }) {
  return (
    <span className="job-progress">
      <progress max={1} value={value ?? undefined} aria-label={label} />
      {value !== null && <span className="muted">{Math.floor(value * 100)}%</span>}
    </span>
  );
}
