import { useEffect, useId, useMemo, useState } from "react";
import { api, call, type Schemas } from "../../api/client";
import { LineChart } from "../../components/LineChart";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { href } from "../../router";
import { ConfirmDialog } from "./ConfirmDialog";
import { num, when } from "./format";

type AliasOut = Schemas["AliasOut"];

const getModel = (name: string) => call(api.GET("/v1/models/{name}", { params: { path: { name } } }));
const moveAlias = (name: string, alias: string, version: number) =>
  call(api.PUT("/v1/models/{name}/aliases/{alias}", { params: { path: { name, alias } }, body: { version } }));
const rollBack = (name: string, alias: string) =>
  call(api.POST("/v1/models/{name}/aliases/{alias}/rollback", { params: { path: { name, alias } } }));

type Pending = { action: "move"; alias: string; version: number } | { action: "rollback"; alias: string };

function outcome(result: AliasOut, action: Pending["action"]): string {
  const was = result.previous_version === null ? "new alias" : `was v${result.previous_version}`;
  const done = action === "rollback" ? "Rolled back" : "Moved";
  return `${done}: ${result.alias} now points at v${result.version} (${was}).`;
}

/** A model: its aliases (move one to a version, roll one back; both confirmed first), its versions with
 * their metrics and the job that trained each, and a metric across the versions. */
export function ModelPage({ name }: { name: string }) {
  const [model, load] = useCall(getModel);
  const [moved, move] = useCall(moveAlias);
  const [rolled, roll] = useCall(rollBack);
  const [pending, setPending] = useState<Pending>();
  const [message, setMessage] = useState<string>();
  const [alias, setAlias] = useState("");
  const [version, setVersion] = useState<number>();
  const [metric, setMetric] = useState("");
  const ids = { alias: useId(), aliases: useId(), version: useId(), metric: useId() };

  useEffect(() => {
    setMessage(undefined);
    void load(name);
  }, [name, load]);

  const data = model.data?.name === name ? model.data : undefined;
  const aliases = useMemo(() => Object.entries(data?.aliases ?? {}).sort(([a], [b]) => a.localeCompare(b)), [data]);
  const versions = data?.versions ?? [];
  // Defaults once loaded: the first alias that is not `latest` (e.g. production), the newest version.
  useEffect(() => {
    if (!data) return;
    setAlias((a) => a || (aliases.find(([n]) => n !== "latest") ?? aliases[0])?.[0] || "production");
    setVersion((v) => v ?? data.versions[data.versions.length - 1]?.version);
  }, [data, aliases]);

  const metricNames = useMemo(
    () => [
      ...new Set(versions.flatMap((v) => Object.keys(v.metrics).filter((k) => typeof v.metrics[k] === "number"))),
    ],
    [versions],
  );
  const shownMetric = metricNames.includes(metric) ? metric : metricNames[0];
  const metricSeries = useMemo(() => {
    if (!shownMetric) return [];
    const withIt = versions.filter((v) => typeof v.metrics[shownMetric] === "number");
    const y = withIt.map((v) => v.metrics[shownMetric] as number);
    return [{ label: shownMetric, x: withIt.map((v) => v.version), y }];
  }, [versions, shownMetric]);

  const confirm = async () => {
    if (!pending) return;
    setPending(undefined);
    setMessage(undefined);
    const result =
      pending.action === "move" ? await move(name, pending.alias, pending.version) : await roll(name, pending.alias);
    if (result) {
      setMessage(outcome(result, pending.action));
      await load(name);
    }
  };

  const current = (a: string) => data?.aliases[a];
  const busy = moved.loading || rolled.loading;

  return (
    <>
      <div className="row spread">
        <h1>Model {name}</h1>
        <a href={href("training", "models")}>All models</a>
      </div>
      <Status loading={model.loading && !data} error={model.error} label="Loading the model" />
      {data && (
        <>
          <section aria-labelledby="aliases-title">
            <h2 id="aliases-title">Aliases</h2>
            <div className="table-wrap">
              <table aria-label="Aliases">
                <thead>
                  <tr>
                    <th scope="col">Alias</th>
                    <th scope="col">Version</th>
                    <th scope="col">Action</th>
                  </tr>
                </thead>
                <tbody>
                  {aliases.map(([a, v]) => (
                    <tr key={a} data-alias={a}>
                      <th scope="row">{a}</th>
                      <td data-testid={`alias-${a}`}>v{v}</td>
                      <td>
                        <button
                          type="button"
                          className="secondary"
                          disabled={busy}
                          onClick={() => setPending({ action: "rollback", alias: a })}
                        >
                          Roll back {a}
                        </button>
                      </td>
                    </tr>
                  ))}
                  {!aliases.length && (
                    <tr>
                      <td colSpan={3} className="muted">
                        No aliases yet.
                      </td>
                    </tr>
                  )}
                </tbody>
              </table>
            </div>
            <form
              className="row move-alias"
              aria-label="Move an alias"
              onSubmit={(e) => {
                e.preventDefault();
                if (alias.trim() && version) setPending({ action: "move", alias: alias.trim(), version });
              }}
            >
              <label htmlFor={ids.alias}>Alias</label>
              <input
                id={ids.alias}
                type="text"
                list={ids.aliases}
                value={alias}
                required
                onChange={(e) => setAlias(e.target.value)}
              />
              <datalist id={ids.aliases}>
                {aliases.map(([a]) => (
                  <option key={a} value={a} />
                ))}
              </datalist>
              <label htmlFor={ids.version}>Version</label>
              <select id={ids.version} value={version ?? ""} onChange={(e) => setVersion(Number(e.target.value))}>
                {versions.map((v) => (
                  <option key={v.version} value={v.version}>
                    v{v.version}
                    {v.aliases.length ? ` (${v.aliases.join(", ")})` : ""}
                  </option>
                ))}
              </select>
              <button type="submit" disabled={busy || !versions.length}>
                Move alias
              </button>
            </form>
            <Status loading={moved.loading} error={moved.error} label="Moving the alias" />
            <Status loading={rolled.loading} error={rolled.error} label="Rolling back" />
            {message && (
              <p className="ok" role="status" data-testid="alias-outcome">
                {message}
              </p>
            )}
          </section>

          <section aria-labelledby="versions-title">
            <h2 id="versions-title">Versions</h2>
            <div className="table-wrap">
              <table aria-label="Versions">
                <thead>
                  <tr>
                    <th scope="col">Version</th>
                    <th scope="col">Aliases</th>
                    <th scope="col">Metrics</th>
                    <th scope="col" className="wide-only">
                      Created
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {[...versions].reverse().map((v) => (
                    <tr key={v.version} data-version={v.version}>
                      <th scope="row">
                        v{v.version} <span className="muted small">{v.kind}</span>
                        {v.base && <div className="muted small">base {v.base}</div>}
                        {v.job_id && (
                          <div className="small">
                            job{" "}
                            <a className="mono" href={href("training", "jobs", v.job_id)}>
                              {v.job_id.slice(0, 8)}
                            </a>
                          </div>
                        )}
                      </th>
                      <td>
                        <span className="aliases">
                          {v.aliases.map((a) => (
                            <span key={a} className="badge">
                              {a}
                            </span>
                          ))}
                        </span>
                      </td>
                      <td className="small">
                        {Object.entries(v.metrics).map(([k, m]) => (
                          <span key={k} className="metric">
                            {k} <span className="mono">{num(m)}</span>
                          </span>
                        ))}
                        {!Object.keys(v.metrics).length && <span className="muted">–</span>}
                      </td>
                      <td className="wide-only">{when(v.created_at)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>

          {shownMetric && versions.length > 1 && (
            <section aria-labelledby="trend-title">
              <div className="row spread">
                <h2 id="trend-title">Metric across versions</h2>
                <span className="row">
                  <label htmlFor={ids.metric}>Metric</label>
                  <select id={ids.metric} value={shownMetric} onChange={(e) => setMetric(e.target.value)}>
                    {metricNames.map((m) => (
                      <option key={m} value={m}>
                        {m}
                      </option>
                    ))}
                  </select>
                </span>
              </div>
              <LineChart
                title={`${shownMetric} by version`}
                series={metricSeries}
                xLabel="version"
                yLabel={shownMetric}
                height={200}
                testId="chart-versions"
              />
            </section>
          )}
        </>
      )}

      <ConfirmDialog
        open={pending !== undefined}
        title={pending?.action === "rollback" ? "Roll back the alias?" : "Move the alias?"}
        confirmLabel={pending?.action === "rollback" ? "Roll back" : "Move"}
        onConfirm={() => void confirm()}
        onCancel={() => setPending(undefined)}
      >
        {pending?.action === "move" && (
          <p>
            Point <strong>{pending.alias}</strong> of {name} at <strong>v{pending.version}</strong>
            {current(pending.alias) !== undefined ? ` (now v${current(pending.alias)})` : " (a new alias)"}? Whatever
            serves {name}@{pending.alias} switches to it.
          </p>
        )}
        {pending?.action === "rollback" && (
          <p>
            Move <strong>{pending.alias}</strong> of {name} (now v{current(pending.alias)}) back to the version it
            pointed at before its last move?
          </p>
        )}
      </ConfirmDialog>
    </>
  );
}
