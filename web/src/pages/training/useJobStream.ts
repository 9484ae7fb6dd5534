import { useEffect, useRef, useState } from "react";
import { ApiError, api, streamed } from "../../api/client";
import { readEvents } from "../../api/sse";
import { type Job, mergePoints, numericValues, type Point } from "./format";

export type ProgressEvent = Pick<Job, "job_id" | "state" | "attempt" | "progress" | "metrics" | "updated_at">;
export type Link = "connecting" | "live" | "reconnecting" | "ended" | "stopped";

const FLUSH_MS = 120; // metrics arrive in bursts (the history first): charts redraw at most this often
const RETRY_MS = 2000; // the stream's own `retry:`; doubled per failed try, up to MAX_RETRY_MS
const MAX_RETRY_MS = 15000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = window.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      window.clearTimeout(timer);
      resolve();
    });
  });
}

function envelopeError(data: string): ApiError {
  try {
    const error = (JSON.parse(data) as { error?: { message?: string; field?: string | null } }).error;
    return new ApiError(error?.message ?? "the event stream failed", 0, error?.field);
  } catch {
    return new ApiError("the event stream failed", 0);
  }
}

/** Follows `GET /v1/jobs/{id}/events` (Server-Sent Events): every metrics point (the history first, then
 * live), each progress change and the final job. A dropped stream is reopened with `Last-Event-ID` (the step
 * before the last one seen: a step may report twice, and points merge by step), after a growing pause.
 * Restarts when `run` changes (a resumed job's stream had ended). */
export function useJobStream(
  jobId: string,
  run: number,
  handlers: { onProgress: (event: ProgressEvent) => void; onEnd: (job: Job) => void },
): { points: Point[]; link: Link; error: ApiError | undefined; reconnects: number } {
  const [points, setPoints] = useState<Point[]>([]);
  const [link, setLink] = useState<Link>("connecting");
  const [error, setError] = useState<ApiError>();
  const [reconnects, setReconnects] = useState(0);
  const latest = useRef(handlers);
  latest.current = handlers;

  useEffect(() => setPoints([]), [jobId]);

  useEffect(() => {
    const abort = new AbortController();
    const { signal } = abort;
    let pending: Point[] = [];
    let flushTimer: number | undefined;
    const flush = () => {
      flushTimer = undefined;
      const batch = pending;
      pending = [];
      if (batch.length && !signal.aborted) setPoints((ps) => mergePoints(ps, batch));
    };

    (async () => {
      let lastStep: number | null = null;
      let failures = 0;
      while (!signal.aborted) {
        setLink(failures ? "reconnecting" : "connecting");
        let ended = false;
        try {
          const resumeFrom = lastStep !== null && lastStep > 0 ? String(lastStep - 1) : undefined;
          const response = await streamed(
            api.GET("/v1/jobs/{job_id}/events", {
              params: { path: { job_id: jobId }, header: resumeFrom ? { "Last-Event-ID": resumeFrom } : undefined },
              parseAs: "stream",
              headers: { Accept: "text/event-stream" },
              signal,
            }),
          );
          setLink("live");
          setError(undefined);
          failures = 0;
          for await (const event of readEvents(response, signal)) {
            if (event.event === "metrics") {
              const point = JSON.parse(event.data) as { step: number; values: Record<string, unknown> };
              lastStep = point.step;
              pending.push({ step: point.step, values: numericValues(point.values ?? {}) });
              flushTimer ??= window.setTimeout(flush, FLUSH_MS);
            } else if (event.event === "progress") {
              latest.current.onProgress(JSON.parse(event.data) as ProgressEvent);
            } else if (event.event === "end") {
              flush();
              latest.current.onEnd(JSON.parse(event.data) as Job);
              ended = true;
            } else if (event.event === "error") {
              setError(envelopeError(event.data));
            }
          }
        } catch (e) {
          if (signal.aborted) break;
          const err = e instanceof ApiError ? e : new ApiError(String((e as Error)?.message ?? e), 0);
          setError(err);
          if (err.status >= 400 && err.status < 500) {
            setLink("stopped"); // unknown job, no access: retrying will not help
            break;
          }
        }
        flush();
        if (signal.aborted) break;
        if (ended) {
          setLink("ended");
          break;
        }
        failures += 1;
        setReconnects((n) => n + 1);
        setLink("reconnecting");
        await sleep(Math.min(RETRY_MS * 2 ** (failures - 1), MAX_RETRY_MS), signal);
      }
    })();

    return () => {
      abort.abort();
      if (flushTimer !== undefined) window.clearTimeout(flushTimer);
    };
  }, [jobId, run]);

  return { points, link, error, reconnects };
}
