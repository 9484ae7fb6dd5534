import type { ApiError } from "../api/client";

/** A call's loading and error state, announced to screen readers. */
export function Status({ loading, error, label }: { loading?: boolean; error?: ApiError; label?: string }) {
  if (error)
    return (
      <p className="error" role="alert">
        {label ? `${label}: ` : ""}
        {error.message}
        {error.field ? ` (${error.field})` : ""}
      </p>
    );
  if (loading)
    return (
      <p className="loading" role="status" aria-live="polite">
        {label ? `${label}…` : "Loading…"}
      </p>
    );
  return null;
}
