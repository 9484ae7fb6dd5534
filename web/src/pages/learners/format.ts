// Presentation helpers of the learner explorer: outcomes as words AND colours (never colour alone),
// probabilities as percentages, times in the reader's locale.

export type OutcomeKind = "correct" | "incorrect" | "partial";

export function outcomeKind(outcome: number): OutcomeKind {
  if (outcome >= 1) return "correct";
  if (outcome <= 0) return "incorrect";
  return "partial";
}

/** "correct", "incorrect" or "partial 0.50": what a cell says besides its colour. */
export function outcomeText(outcome: number): string {
  const kind = outcomeKind(outcome);
  return kind === "partial" ? `partial ${outcome.toFixed(2)}` : kind;
}

export function outcomeSymbol(outcome: number): string {
  return { correct: "✓", incorrect: "✗", partial: "◐" }[outcomeKind(outcome)];
}

export function percent(p: number): string {
  return `${(p * 100).toFixed(1)}%`;
}

export function when(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** Sequence names: A, B, C. */
export function sequenceName(index: number): string {
  return String.fromCharCode(65 + index);
}

/** A fresh learner id the API accepts ([A-Za-z0-9._:@-]). */
export function newLearnerId(): string {
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  return `learner-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
