import { useCallback, useEffect, useRef, useState } from "react";
import { api, call } from "../../api/client";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { href } from "../../router";
import { AblationTable } from "./Ablation";
import { EvalResults } from "./EvalResults";
import {
  asRecord,
  canCancel,
  canResume,
  duration,
  elapsed,
  eta,
  fraction,
  type Job,
  num,
  progressText,
  when,
} from "./format";
import { MetricCharts } from "./MetricCharts";
import { ProgressBar, StateBadge } from "./StateBadge";
import { type Link, type ProgressEvent, useJobStream } from "./useJobStream";

const getJob = (id: string) => call(api.GET("/v1/jobs/{job_id}", { params: { path: { job_id: id } } }));
const cancelJob = (id: string) => call(api.POST("/v1/jobs/{job_id}/cancel", { params: { path: { job_id: id } } }));
const resumeJob = (id: string) => call(api.POST("/v1/jobs/{job_id}/resume", { params: { path: { job_id: id } } }));

/** The newer of two snapshots of a job (a GET and the stream's events may cross). */
function newer(prev: Job | undefined, next: Job): Job {
  if (!prev || prev.job_id !== next.job_id) return next;
  return Date.parse(next.updated_at) >= Date.parse(prev.updated_at) ? next : prev;
}

/** What a progress event changes of a job. */
function pick({ state, attempt, progress, metrics, updated_at }: ProgressEvent) {
  return { state, attempt, progress, metrics, updated_at };
}

const LINK_TEXT: Record<Link, string> = {
  connecting: "connecting to the live stream…",
  live: "live",
  reconnecting: "stream dropped: reconnecting…",
  ended: "the job ended; the stream closed",
  stopped: "not following",
};

/** A job: state, progress, ETA, live metric curves (SSE), cancel / resume, the model it produced, and a
 * gating job's ablation or an evaluation's plots. */
export function JobPage({ jobId }: { jobId: string }) {
  const [job, setJob] = useState<Job>();
  const [loaded, load] = useCall(getJob);
  const [cancelled, cancel] = useCall(cancelJob);
  const [resumed, resume] = useCall(resumeJob);
  const [run, setRun] = useState(0);
  const [now, setNow] = useState(() => Date.now());

  useEffect(() => {
    setJob(undefined);
    void load(jobId).then((j) => j && setJob((prev) => newer(prev, j)));
  }, [jobId, load]);

  const current = useRef(job);
  current.current = job;
  const onProgress = useCallback(
    (e: ProgressEvent) => {
      const prev = current.current;
      // A progress event has no timestamps of the run (started_at, finished_at): read them on a new state.
      if (prev && (prev.state !== e.state || prev.attempt !== e.attempt))
        void load(jobId).then((j) => j && setJob((p) => newer(p, j)));
      setJob((p) =>
        p && Date.parse(e.updated_at) >= Date.parse(p.updated_at)
          ? { ...p, ...pick(e) }
          : p,
      );
    },
    [jobId, load],
  );
  const onEnd = useCallback((j: Job) => setJob((prev) => newer(prev, j)), []);
  const stream = useJobStream(jobId, run, { onProgress, onEnd });

  const running = job?.state === "running";
  useEffect(() => {
    if (!running) return;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [running]);

  const title = <h1>Job {jobId.slice(0, 12)}</h1>;
  if (!job)
    return (
      <>
        {title}
        <Status loading={loaded.loading || !loaded.error} error={loaded.error} label="Loading the job" />
        <p>
          <a href={href("training")}>Back to the jobs</a>
        </p>
      </>
    );

  const result = asRecord(job.result);
  const models = (Array.isArray(result?.models) ? result.models : [result?.model])
    .map(asRecord)
    .filter((m): m is Record<string, unknown> => m !== null && typeof m.name === "string");
  const done = fraction(job.progress);
  const seconds = elapsed(job, now);
  const left = eta(job, now);
  const p = job.progress;
  const latest = Object.entries(job.metrics ?? {});

  return (
    <>
      <div className="row spread">
        {title}
        <StateBadge state={job.state} />
      </div>
      <p className="muted job-id">
        <span className="mono">{job.job_id}</span> · {job.kind} on queue {job.queue} · attempt {job.attempt}
      </p>

      <section aria-labelledby="progress-title">
        <h2 id="progress-title">Progress</h2>
        <div className="row">
          <ProgressBar value={done} label="Job progress" />
          <span data-testid="job-step">Step {progressText(p)}</span>
        </div>
        <dl className="facts">
          <div>
            <dt>State</dt>
            <dd>{job.state}</dd>
          </div>
          <div>
            <dt>Elapsed</dt>
            <dd>{duration(seconds)}</dd>
          </div>
          <div>
            <dt>ETA</dt>
            <dd data-testid="job-eta">{running ? duration(left) : "–"}</dd>
          </div>
          <div>
            <dt>Throughput</dt>
            <dd>{typeof p.throughput === "number" ? `${num(p.throughput)} ${p.throughput_unit ?? "/s"}` : "–"}</dd>
          </div>
          <div>
            <dt>{p.phase ? `Loss (${p.phase})` : "Loss"}</dt>
            <dd>{num(p.loss)}</dd>
          </div>
          <div>
            <dt>Last checkpoint</dt>
            <dd>{typeof p.last_checkpoint === "number" ? `step ${p.last_checkpoint}` : "–"}</dd>
          </div>
          <div>
            <dt>Created</dt>
            <dd>{when(job.created_at)}</dd>
          </div>
          <div>
            <dt>Finished</dt>
            <dd>{when(job.finished_at)}</dd>
          </div>
        </dl>
        <div className="row">
          <button
            type="button"
            className="danger"
            disabled={!canCancel(job.state) || cancelled.loading}
            onClick={async () => {
              const j = await cancel(job.job_id);
              if (j) setJob((prev) => newer(prev, j));
            }}
          >
            Cancel job
          </button>
          <button
            type="button"
            disabled={!canResume(job.state) || resumed.loading}
            onClick={async () => {
              const j = await resume(job.job_id);
              if (j) {
                setJob((prev) => newer(prev, j));
                setRun((r) => r + 1); // the old stream ended with the job: follow the new run
              }
            }}
          >
            Resume job
          </button>
          <Status loading={cancelled.loading} error={cancelled.error} label="Cancelling" />
          <Status loading={resumed.loading} error={resumed.error} label="Resuming" />
        </div>
        {job.state === "cancelling" && <p className="muted">Stopping at the next checkpoint…</p>}
        {job.error && (
          <p className="error" role="alert">
            Failed: {job.error}
          </p>
        )}
      </section>

      {models.length > 0 && (
        <section aria-labelledby="model-title">
          <h2 id="model-title">Resulting model</h2>
          <ul>
            {models.map((m) => (
              <li key={`${m.name}@${m.version}`}>
                <a href={href("training", "models", String(m.name))}>
                  {String(m.name)} v{String(m.version)}
                </a>{" "}
                {typeof m.kind === "string" && <span className="muted">({m.kind})</span>}
              </li>
            ))}
          </ul>
        </section>
      )}

      {result?.ablation ? <AblationTable result={result} /> : null}
      {result && (job.kind === "eval" || asRecord(result.artifacts)) && (
        <EvalResults jobId={job.job_id} result={result} />
      )}

      <section aria-labelledby="curves-title">
        <div className="row spread">
          <h2 id="curves-title">Metrics</h2>
          <span className={`stream ${stream.link}`} role="status" aria-live="polite" data-testid="stream-state">
            {LINK_TEXT[stream.link]}
          </span>
        </div>
        <Status error={stream.error} label="Live stream" />
        <MetricCharts points={stream.points} />
        {latest.length > 0 && (
          <details>
            <summary>Latest evaluation metrics ({latest.length})</summary>
            <div className="table-wrap">
              <table aria-label="Latest metrics">
                <tbody>
                  {latest.map(([k, v]) => (
                    <tr key={k}>
                      <th scope="row" className="mono">
                        {k}
                      </th>
                      <td className="num mono">{num(v)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </details>
        )}
      </section>

      <details className="panel">
        <summary>Config</summary>
        <pre className="mono config">{JSON.stringify(job.config, null, 2)}</pre>
      </details>
      <p>
        <a href={href("training")}>Back to the jobs</a>
      </p>
    </>
  );
}
