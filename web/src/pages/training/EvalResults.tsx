import { useEffect, useMemo, useState } from "react";
import { api, call } from "../../api/client";
import { LineChart, type Series } from "../../components/LineChart";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { asRecord, num } from "./format";

async function fetchArtifact(jobId: string, name: string): Promise<Blob> {
  return call(
    api.GET("/v1/jobs/{job_id}/artifacts/{name}", { params: { path: { job_id: jobId, name } }, parseAs: "blob" }),
  );
}

const IMAGE = /\.(png|svg|jpe?g|gif|webp)$/i;

/** One artifact: an image is fetched (with the API key) and shown; another file gets a download link. */
function Artifact({ jobId, name }: { jobId: string; name: string }) {
  const [file, load] = useCall(fetchArtifact);
  const [url, setUrl] = useState<string>();
  const image = IMAGE.test(name);
  useEffect(() => {
    if (image) void load(jobId, name);
  }, [image, load, jobId, name]);
  useEffect(() => {
    if (!file.data) return;
    const objectUrl = URL.createObjectURL(file.data);
    setUrl(objectUrl);
    return () => URL.revokeObjectURL(objectUrl);
  }, [file.data]);
  const title = name.replace(/\.[a-z]+$/i, "").replace(/[_-]+/g, " ");
  if (image)
    return (
      <figure className="artifact">
        <figcaption>{title}</figcaption>
        <Status loading={file.loading} error={file.error} label={`Loading ${name}`} />
        {url && <img src={url} alt={`Evaluation plot: ${title}`} data-testid="artifact-image" />}
      </figure>
    );
  return (
    <p className="row">
      {url ? (
        <a href={url} download={name}>
          Save {name}
        </a>
      ) : (
        <button type="button" className="secondary" onClick={() => void load(jobId, name)} disabled={file.loading}>
          Download {name}
        </button>
      )}
      <Status loading={file.loading} error={file.error} label={`Downloading ${name}`} />
    </p>
  );
}

/** An evaluation job's results: a table per model, the compliance and margin across the models as
 * LineCharts (x = the models in order), and the plots and files it stored as artifacts. */
function derive(result: Record<string, unknown>) {
  const listed = asRecord(result.evaluation)?.models;
  const models = (Array.isArray(listed) ? listed : [])
    .map(asRecord)
    .filter((m): m is Record<string, unknown> => m !== null);
  const artifacts = asRecord(result.artifacts);
  const listedFiles: unknown[] = Array.isArray(artifacts?.files) ? artifacts.files : [];
  const files = listedFiles.filter((f): f is string => typeof f === "string");
  const prefs = [...new Set(models.flatMap((m) => Object.keys(asRecord(m.compliance) ?? {})))];
  const collapseKeys = [...new Set(models.flatMap((m) => Object.keys(asRecord(m.collapse) ?? {})))];
  const chart = (group: "compliance" | "margin"): Series[] =>
    prefs.map((pref) => ({
      label: pref,
      x: models.map((_, i) => i + 1),
      y: models.map((m) => {
        const v = asRecord(m[group])?.[pref];
        return typeof v === "number" ? v : null;
      }),
    }));
  return { models, files, prefs, collapseKeys, compliance: chart("compliance"), margin: chart("margin") };
}

/** An evaluation job's results: a table per model, the compliance and margin across the models as
 * LineCharts (x = the models in order), and the plots and files it stored as artifacts. */
export function EvalResults({ jobId, result }: { jobId: string; result: Record<string, unknown> }) {
  const { models, files, prefs, collapseKeys, compliance, margin } = useMemo(() => derive(result), [result]);
  if (!models.length && !files.length) return null;
  return (
    <section aria-labelledby="eval-title">
      <h2 id="eval-title">Evaluation</h2>
      {models.length > 0 && (
        <div className="table-wrap">
          <table aria-label="Evaluation by model">
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Model</th>
                {prefs.map((p) => (
                  <th key={`c-${p}`} scope="col" className="num">
                    compliance {p}
                  </th>
                ))}
                {prefs.map((p) => (
                  <th key={`m-${p}`} scope="col" className="num">
                    margin {p}
                  </th>
                ))}
                <th scope="col" className="num">
                  capability
                </th>
                {collapseKeys.map((k) => (
                  <th key={k} scope="col" className="num">
                    {k}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {models.map((m, i) => (
                <tr key={i}>
                  <td>{i + 1}</td>
                  <th scope="row" className="mono">
                    {String(m.model ?? m.ref ?? "?")}
                  </th>
                  {prefs.map((p) => (
                    <td key={`c-${p}`} className="num mono">
                      {num(asRecord(m.compliance)?.[p])}
                    </td>
                  ))}
                  {prefs.map((p) => (
                    <td key={`m-${p}`} className="num mono">
                      {num(asRecord(m.margin)?.[p])}
                    </td>
                  ))}
                  <td className="num mono">{num(m.capability)}</td>
                  {collapseKeys.map((k) => (
                    <td key={k} className="num mono">
                      {num(asRecord(m.collapse)?.[k])}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {models.length > 0 && prefs.length > 0 && (
        <div className="grid charts">
          <LineChart
            title="Compliance by model"
            series={compliance}
            xLabel="model #"
            yLabel="verifier score"
            yRange={[0, 1]}
            height={200}
            testId="chart-eval-compliance"
          />
          <LineChart
            title="Log-prob margin by model"
            series={margin}
            xLabel="model #"
            yLabel="nats"
            height={200}
            testId="chart-eval-margin"
          />
        </div>
      )}
      {files.length > 0 && (
        <>
          <h3>Plots and files</h3>
          <div className="grid artifacts">
            {files.filter((f) => IMAGE.test(f)).map((f) => (
              <Artifact key={f} jobId={jobId} name={f} />
            ))}
          </div>
          {files.filter((f) => !IMAGE.test(f)).map((f) => (
            <Artifact key={f} jobId={jobId} name={f} />
          ))}
        </>
      )}
    </section>
  );
}
