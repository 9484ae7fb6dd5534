import { useEffect, useMemo } from "react";
import { api, call, type Schemas } from "../../api/client";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { href } from "../../router";
import { num, when } from "./format";

type Version = Schemas["ModelVersionOut"];

const listModels = () => call(api.GET("/v1/models"));

interface ModelRow {
  name: string;
  kind: string;
  versions: Version[];
  aliases: [string, number][];
}

function byModel(versions: Version[]): ModelRow[] {
  const rows = new Map<string, ModelRow>();
  for (const v of versions) {
    const row = rows.get(v.name) ?? { name: v.name, kind: v.kind, versions: [], aliases: [] };
    row.versions.push(v);
    row.aliases.push(...v.aliases.map((a): [string, number] => [a, v.version]));
    rows.set(v.name, row);
  }
  for (const row of rows.values()) {
    row.versions.sort((a, b) => a.version - b.version);
    row.aliases.sort(([a], [b]) => a.localeCompare(b));
  }
  return [...rows.values()];
}

export function metricsText(metrics: Record<string, unknown>, max = 4): string {
  const entries = Object.entries(metrics).filter(([, v]) => typeof v === "number");
  const shown = entries.slice(0, max).map(([k, v]) => `${k} ${num(v)}`);
  return shown.length ? shown.join(" · ") + (entries.length > max ? ` · +${entries.length - max}` : "") : "–";
}

/** The registry: every model the tenant sees, its kind, versions, aliases and its latest version's metrics. */
export function ModelsList() {
  const [models, load] = useCall(listModels);
  useEffect(() => {
    void load();
  }, [load]);
  const rows = useMemo(() => byModel(models.data?.models ?? []), [models.data]);
  return (
    <>
      <div className="row spread">
        <h1>Model registry</h1>
        <button type="button" className="secondary" onClick={() => void load()}>
          Refresh
        </button>
      </div>
      <Status loading={models.loading && !models.data} error={models.error} label="Loading the models" />
      {models.data && !rows.length && <p className="muted">No models registered yet.</p>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table aria-label="Models">
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Kind</th>
                <th scope="col">Versions</th>
                <th scope="col">Aliases</th>
                <th scope="col" className="wide-only">
                  Latest metrics
                </th>
                <th scope="col" className="wide-only">
                  Updated
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => {
                const last = row.versions[row.versions.length - 1];
                return (
                  <tr key={row.name} data-model={row.name}>
                    <th scope="row">
                      <a href={href("training", "models", row.name)}>{row.name}</a>
                    </th>
                    <td>{row.kind}</td>
                    <td>{row.versions.length}</td>
                    <td>
                      <span className="aliases">
                        {row.aliases.map(([a, v]) => (
                          <span key={a} className="badge">
                            {a} → v{v}
                          </span>
                        ))}
                        {!row.aliases.length && <span className="muted">–</span>}
                      </span>
                    </td>
                    <td className="wide-only small">{metricsText(last.metrics)}</td>
                    <td className="wide-only">{when(last.created_at)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
