import { useMemo } from "react";
import { LineChart, type Series } from "../../components/LineChart";
import type { TrajectoryStep } from "./api";

/** A token as text that shows its whitespace and escapes (`" the"`, `"\n"`). */
export function shown(token: string): string {
  return JSON.stringify(token);
}

/** The modulation's colour: blue for conservative (m = 0) to orange for exploratory (m = 1). */
export function heat(m: number): string {
  const t = Math.min(1, Math.max(0, m));
  return `hsl(${210 - 185 * t} 85% ${90 - 8 * t}%)`;
}

const fix = (v: number | null | undefined, digits = 3) => (v == null ? "—" : v.toFixed(digits));

/** The generated tokens, each tinted by its modulation (details in its tooltip and in the table below). */
export function TokenStrip({ steps }: { steps: TrajectoryStep[] }) {
  return (
    <span className="token-strip">
      {steps.map((s, i) => (
        <span
          key={i}
          className="tok"
          style={{ background: heat(s.modulation) }}
          title={`token ${i + 1} ${shown(s.token)}: m ${fix(s.modulation)}, temperature ${fix(s.temperature)}, top-k ${s.top_k}, top-p ${fix(s.top_p)}, repetition penalty ${fix(s.repetition_penalty)}`}
        >
          {s.token}
        </span>
      ))}
    </span>
  );
}

/** The modulation trajectory: m per generated token, the sampling parameters it set, and every step in a
 * table (token, id, m and parameters) aligned by position. */
export function Trajectory({ steps }: { steps: TrajectoryStep[] }) {
  const x = useMemo(() => steps.map((_, i) => i + 1), [steps]);
  const modulation = useMemo<Series[]>(() => [{ label: "m", x, y: steps.map((s) => s.modulation) }], [steps, x]);
  const gated = steps.some((s) => s.gate_signal != null);
  const params = useMemo<Series[]>(() => {
    const series: Series[] = [
      { label: "temperature", x, y: steps.map((s) => s.temperature) },
      { label: "top-p", x, y: steps.map((s) => s.top_p) },
      { label: "repetition penalty", x, y: steps.map((s) => s.repetition_penalty) },
    ];
    if (gated) series.push({ label: "gate signal", x, y: steps.map((s) => s.gate_signal ?? null), dash: true });
    return series;
  }, [steps, x, gated]);
  const topK = useMemo<Series[]>(() => [{ label: "top-k", x, y: steps.map((s) => s.top_k) }], [steps, x]);
  const yRange = useMemo<[number, number]>(() => [0, 1], []);

  return (
    <div className="trajectory">
      <LineChart
        title="Modulation m per generated token"
        series={modulation}
        xLabel="token"
        yLabel="m"
        yRange={yRange}
        height={200}
        testId="trajectory-chart"
      />
      <div className="grid">
        <LineChart
          title="Sampling parameters set by m"
          series={params}
          xLabel="token"
          yLabel="value"
          height={180}
          testId="parameters-chart"
        />
        <LineChart title="Top-k set by m" series={topK} xLabel="token" yLabel="k" height={180} testId="topk-chart" />
      </div>
      <details className="steps" open={steps.length <= 64}>
        <summary>Each token and its step ({steps.length})</summary>
        <div className="table-wrap">
          <table data-testid="trajectory-table">
            <caption className="muted">Tokens in order, with the modulation they were sampled under</caption>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Token</th>
                <th scope="col">Id</th>
                <th scope="col">m</th>
                <th scope="col">Temperature</th>
                <th scope="col">Top-k</th>
                <th scope="col">Top-p</th>
                <th scope="col">Rep. penalty</th>
                {gated && <th scope="col">Gate signal</th>}
              </tr>
            </thead>
            <tbody>
              {steps.map((s, i) => (
                <tr key={i}>
                  <td>{i + 1}</td>
                  <th scope="row">
                    <code className="tok" style={{ background: heat(s.modulation) }}>
                      {shown(s.token)}
                    </code>
                  </th>
                  <td>{s.token_id}</td>
                  <td data-testid="step-m">{fix(s.modulation)}</td>
                  <td>{fix(s.temperature)}</td>
                  <td>{s.top_k}</td>
                  <td>{fix(s.top_p)}</td>
                  <td>{fix(s.repetition_penalty)}</td>
                  {gated && <td>{fix(s.gate_signal)}</td>}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </div>
  );
}
