import { useCallback, useEffect } from "react";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { href } from "../../router";
import { getAdapter, type AdapterVersion } from "./api";

interface Gate {
  passed?: boolean;
  reasons?: string[];
  figures?: Record<string, number>;
}

function gateOf(version: AdapterVersion): Gate | undefined {
  const gate = version.metadata?.gate;
  return gate && typeof gate === "object" ? (gate as Gate) : undefined;
}

function fmt(value: unknown): string {
  return typeof value === "number" ? (Number.isInteger(value) ? String(value) : value.toPrecision(4)) : String(value);
}

/** The adapter's versions (newest first) with how each came to be and its quality gate's verdict. `refresh`
 * changes when something may have made a version (a feedback item settled). */
export function AdapterVersions({ name, refresh }: { name: string; refresh: number }) {
  const fetchAdapter = useCallback(() => getAdapter(name), [name]);
  const [adapter, load] = useCall(fetchAdapter);

  useEffect(() => {
    void load();
  }, [load, refresh]);

  const data = adapter.data;
  return (
    <section aria-labelledby="adapter-versions-title" className="adapter-versions">
      <div className="row spread">
        <h2 id="adapter-versions-title">Adapter {name}: versions</h2>
        <button type="button" className="secondary" onClick={() => void load()} disabled={adapter.loading}>
          Refresh versions
        </button>
      </div>
      <Status loading={adapter.loading} error={adapter.error} label="Loading the adapter" />
      {data && (
        <>
          <p className="muted">
            Aliases:{" "}
            {Object.entries(data.aliases)
              .map(([alias, v]) => `${alias} → v${v}`)
              .join(", ") || "none"}
          </p>
          <ol className="versions" data-testid="adapter-versions" aria-label={`Versions of ${name}, newest first`}>
            {[...data.versions].reverse().map((v) => {
              const gate = gateOf(v);
              const feedback = v.metadata?.feedback;
              const parent = v.metadata?.parent;
              return (
                <li key={v.version} className="version">
                  <div className="row">
                    <strong>v{v.version}</strong>
                    {v.aliases.map((a) => (
                      <span key={a} className="badge alias">
                        {a}
                      </span>
                    ))}
                    <span className="muted small">{new Date(v.created_at).toLocaleString()}</span>
                  </div>
                  <dl className="facts">
                    <div>
                      <dt>Source</dt>
                      <dd>
                        {v.source ?? "—"}
                        {typeof parent === "number" && ` (from v${parent})`}
                        {Array.isArray(feedback) && `, ${feedback.length} feedback item(s)`}
                      </dd>
                    </div>
                    {v.job_id && (
                      <div>
                        <dt>Job</dt>
                        <dd>
                          <a href={href("training", "jobs", v.job_id)}>{v.job_id}</a>
                        </dd>
                      </div>
                    )}
                    <div>
                      <dt>Gate</dt>
                      <dd>
                        {gate ? (
                          <span className={`badge ${gate.passed ? "passed" : "failed"}`}>
                            {gate.passed ? "passed" : "failed"}
                          </span>
                        ) : (
                          <span className="muted">none (not trained on feedback)</span>
                        )}
                      </dd>
                    </div>
                  </dl>
                  {gate?.reasons && gate.reasons.length > 0 && (
                    <ul className="reasons">
                      {gate.reasons.map((r) => (
                        <li key={r}>{r}</li>
                      ))}
                    </ul>
                  )}
                  {gate?.figures && Object.keys(gate.figures).length > 0 && (
                    <details>
                      <summary>Gate figures of v{v.version}</summary>
                      <dl className="figures">
                        {Object.entries(gate.figures).map(([k, val]) => (
                          <div key={k}>
                            <dt>{k}</dt>
                            <dd>{fmt(val)}</dd>
                          </div>
                        ))}
                      </dl>
                    </details>
                  )}
                </li>
              );
            })}
          </ol>
        </>
      )}
    </section>
  );
}
