import { useEffect, useId, useState } from "react";
import { api, call } from "../../api/client";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { href } from "../../router";
import { asRecord, fraction, isActive, JOB_STATES, type JobState, progressText, shortId, when } from "./format";
import { KINDS, type KindName } from "./kinds";
import { ProgressBar, StateBadge } from "./StateBadge";

const PAGE_SIZE = 20;
export const POLL_MS = 2500;

async function loadJobs(kind: KindName | "", state: JobState | "", before: string | undefined) {
  return call(
    api.GET("/v1/jobs", {
      params: { query: { kind: kind || undefined, state: state || undefined, limit: PAGE_SIZE, before } },
    }),
  );
}

/** Jobs newest first, filtered by kind and state, a page at a time; polled while any shown job is queued,
 * running or cancelling, so states change in place. */
export function JobsList() {
  const [kind, setKind] = useState<KindName | "">("");
  const [state, setState] = useState<JobState | "">("");
  const [cursors, setCursors] = useState<string[]>([]); // `before` of each page after the first
  const before = cursors[cursors.length - 1];
  const [jobs, load] = useCall(loadJobs);
  const kindId = useId();
  const stateId = useId();

  useEffect(() => {
    void load(kind, state, before);
  }, [load, kind, state, before]);

  const live = jobs.data?.jobs.some((j) => isActive(j.state)) ?? false;
  useEffect(() => {
    if (!live || jobs.loading || jobs.error) return;
    const timer = window.setTimeout(() => void load(kind, state, before), POLL_MS);
    return () => window.clearTimeout(timer);
  }, [live, jobs.data, jobs.loading, jobs.error, load, kind, state, before]);

  const list = jobs.data?.jobs ?? [];
  return (
    <>
      <div className="row spread">
        <h1>Training jobs</h1>
        <a className="button-link" href={href("training", "new")}>
          New job
        </a>
      </div>
      <form className="panel row filters" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <label htmlFor={kindId}>Kind</label>
        <select
          id={kindId}
          value={kind}
          onChange={(e) => {
            setKind(e.target.value as KindName | "");
            setCursors([]);
          }}
        >
          <option value="">any</option>
          {KINDS.map((k) => (
            <option key={k.name} value={k.name}>
              {k.name}
            </option>
          ))}
        </select>
        <label htmlFor={stateId}>State</label>
        <select
          id={stateId}
          value={state}
          onChange={(e) => {
            setState(e.target.value as JobState | "");
            setCursors([]);
          }}
        >
          <option value="">any</option>
          {JOB_STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <button type="button" className="secondary" onClick={() => void load(kind, state, before)}>
          Refresh
        </button>
        <span className="muted" aria-live="polite">
          {live ? "Live: updating every few seconds" : ""}
        </span>
      </form>
      <Status loading={jobs.loading && !jobs.data} error={jobs.error} label="Loading jobs" />
      {jobs.data && !list.length && (
        <p className="muted">No jobs{kind || state ? " match these filters" : " yet"}.</p>
      )}
      {list.length > 0 && (
        <div className="table-wrap">
          <table className="jobs-table" aria-label="Jobs">
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">State</th>
                <th scope="col">Progress</th>
                <th scope="col" className="wide-only">
                  Created
                </th>
                <th scope="col" className="wide-only">
                  Model
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((job) => {
                const model = asRecord(asRecord(job.result)?.model);
                return (
                  <tr key={job.job_id} data-job-id={job.job_id}>
                    <td>
                      <a
                        className="mono"
                        href={href("training", "jobs", job.job_id)}
                        aria-label={`Job ${job.job_id}`}
                      >
                        {shortId(job.job_id)}
                      </a>
                      <div className="muted small">{job.kind}</div>
                    </td>
                    <td>
                      <StateBadge state={job.state} />
                    </td>
                    <td>
                      <ProgressBar value={fraction(job.progress)} label={`Progress of job ${shortId(job.job_id)}`} />
                      <div className="muted small">{progressText(job.progress)}</div>
                    </td>
                    <td className="wide-only">{when(job.created_at)}</td>
                    <td className="wide-only">
                      {model && typeof model.name === "string" ? (
                        <a href={href("training", "models", model.name)}>
                          {model.name} v{String(model.version)}
                        </a>
                      ) : (
                        <span className="muted">–</span>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {(cursors.length > 0 || jobs.data?.next_cursor) && (
        <nav className="row pager" aria-label="Pages of jobs">
          <button
            type="button"
            className="secondary"
            disabled={!cursors.length}
            onClick={() => setCursors((c) => c.slice(0, -1))}
          >
            Newer jobs
          </button>
          <span className="muted">Page {cursors.length + 1}</span>
          <button
            type="button"
            className="secondary"
            disabled={!jobs.data?.next_cursor}
            onClick={() => jobs.data?.next_cursor && setCursors((c) => [...c, jobs.data!.next_cursor!])}
          >
            Older jobs
          </button>
        </nav>
      )}
    </>
  );
}
