import { useId, useMemo, useState } from "react";
import { LineChart, type Series } from "../../components/LineChart";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { type Forecast, forecast } from "./api";
import { percent, sequenceName } from "./format";

const MAX_SEQUENCES = 3;
const Y_RANGE: [number, number] = [0, 1];

interface Run {
  sequences: string[][];
  samples: number;
  seed: number;
  expected: Forecast;
  sampled?: Forecast;
}

/** Both roll-outs of the same candidates: expected feedback (deterministic), and, if asked, `samples` runs
 * with sampled feedback in one seeded call (the candidates repeated: every row is drawn independently). */
async function runForecast(learnerId: string, sequences: string[][], samples: number, seed: number): Promise<Run> {
  const repeated = Array.from({ length: samples }, () => sequences).flat();
  const [expected, sampled] = await Promise.all([
    forecast(learnerId, sequences, "expected"),
    samples > 0 ? forecast(learnerId, repeated, "sample", seed) : Promise.resolve(undefined),
  ]);
  return { sequences, samples, seed, expected, sampled };
}

const steps = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** Candidate task sequences (1 to 3, built step by step) rolled out from the learner's state: the expected
 * P(correct) per step, and sampled-feedback curves. Changes nothing. */
export function ForecastPanel(props: {
  learnerId: string;
  tasks: string[];
  sequences: string[][];
  onSequences: (update: (current: string[][]) => string[][]) => void;
}) {
  const { learnerId, tasks, sequences, onSequences } = props;
  const [samples, setSamples] = useState(3);
  const [seed, setSeed] = useState(7);
  const [result, run] = useCall(runForecast);
  const titleId = useId();
  const samplesId = useId();
  const seedId = useId();

  const lengths = new Set(sequences.map((s) => s.length));
  const ragged = lengths.size > 1;
  const update = (index: number, next: string[]) =>
    onSequences((current) => current.map((s, i) => (i === index ? next : s)));

  const expectedSeries = useMemo<Series[]>(() => {
    const data = result.data;
    if (!data) return [];
    return data.expected.predictions.map((ps, i) => ({
      label: `${sequenceName(i)} expected`,
      x: steps(ps.length),
      y: ps,
    }));
  }, [result.data]);
  const sampledSeries = useMemo<Series[]>(() => {
    const data = result.data;
    if (!data?.sampled) return [];
    const s = data.sequences.length;
    return data.sampled.predictions.map((ps, row) => ({
      label: `${sequenceName(row % s)} sample ${Math.floor(row / s) + 1}`,
      x: steps(ps.length),
      y: ps,
      dash: true,
    }));
  }, [result.data]);

  return (
    <section id="forecast" aria-labelledby={titleId} className="stack">
      <h2 id={titleId}>Forecast candidate sequences</h2>
      <p className="muted">
        Each sequence is rolled out from the learner's current state, feeding back either the expected outcome or
        a sampled one. Sequences must have the same length.
      </p>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault();
          void run(learnerId, sequences, samples, seed);
        }}
      >
        <div className="lx-sequences">
          {sequences.map((sequence, i) => (
            <SequenceEditor
              key={i}
              name={sequenceName(i)}
              tasks={tasks}
              sequence={sequence}
              onChange={(next) => update(i, next)}
              onRemove={sequences.length > 1 ? () => onSequences((c) => c.filter((_, j) => j !== i)) : undefined}
            />
          ))}
        </div>
        <div className="row">
          <button
            type="button"
            className="secondary"
            disabled={sequences.length >= MAX_SEQUENCES}
            onClick={() => onSequences((c) => [...c, []])}
          >
            Add sequence
          </button>
          {ragged && (
            <span className="muted" role="note">
              Lengths differ ({[...lengths].join(", ")}): the forecast needs equal lengths.
            </span>
          )}
        </div>
        <div className="row">
          <label htmlFor={samplesId}>Sampled runs per sequence</label>
          <input
            id={samplesId}
            type="number"
            min={0}
            max={5}
            value={samples}
            onChange={(e) => setSamples(Math.max(0, Math.min(5, Math.trunc(Number(e.target.value)) || 0)))}
          />
          <label htmlFor={seedId}>Seed</label>
          <input
            id={seedId}
            type="number"
            min={0}
            value={seed}
            onChange={(e) => setSeed(Math.max(0, Math.trunc(Number(e.target.value)) || 0))}
          />
        </div>
        <div className="row">
          <button type="submit" disabled={result.loading}>
            Forecast
          </button>
        </div>
      </form>
      <Status loading={result.loading} error={result.error} label="Forecasting" />
      {result.data && !result.loading && (
        <>
          <LineChart
            title="Expected P(correct) per step"
            series={expectedSeries}
            xLabel="step"
            yLabel="P(correct)"
            yRange={Y_RANGE}
            testId="forecast-expected"
          />
          {sampledSeries.length > 0 && (
            <LineChart
              title={`Sampled feedback: P(correct) per step (seed ${result.data.seed}, ${result.data.samples} run${result.data.samples === 1 ? "" : "s"} each)`}
              series={sampledSeries}
              xLabel="step"
              yLabel="P(correct)"
              yRange={Y_RANGE}
              testId="forecast-sampled"
            />
          )}
          <ForecastTable run={result.data} />
        </>
      )}
    </section>
  );
}

function ForecastTable({ run }: { run: Run }) {
  const s = run.sequences.length;
  const sampledMean = (i: number) => {
    const rows = run.sampled?.predictions.filter((_, row) => row % s === i) ?? [];
    if (!rows.length) return undefined;
    return rows.reduce((sum, ps) => sum + ps[ps.length - 1], 0) / rows.length;
  };
  return (
    <div className="table-wrap">
      <table>
        <caption className="lx-sr-only">P(correct) at the last step of each sequence</caption>
        <thead>
          <tr>
            <th scope="col">Sequence</th>
            <th scope="col">Tasks</th>
            <th scope="col">Last step, expected</th>
            {run.sampled && <th scope="col">Last step, sampled (mean)</th>}
          </tr>
        </thead>
        <tbody>
          {run.sequences.map((sequence, i) => {
            const ps = run.expected.predictions[i];
            const mean = sampledMean(i);
            return (
              <tr key={i}>
                <th scope="row">{sequenceName(i)}</th>
                <td className="mono lx-wrap">{sequence.join(" → ")}</td>
                <td>{ps?.length ? percent(ps[ps.length - 1]) : "–"}</td>
                {run.sampled && <td>{mean === undefined ? "–" : percent(mean)}</td>}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function SequenceEditor(props: {
  name: string;
  tasks: string[];
  sequence: string[];
  onChange: (next: string[]) => void;
  onRemove?: () => void;
}) {
  const { name, tasks, sequence, onChange, onRemove } = props;
  const [chosen, setTask] = useState(""); // "" until the user picks one
  const task = chosen || tasks[0] || ""; // derived: a default set by an effect could undo an early pick
  const selectId = useId();
  return (
    <fieldset className="lx-sequence">
      <legend>Sequence {name}</legend>
      {sequence.length === 0 ? (
        <p className="muted">Empty: add steps.</p>
      ) : (
        <ol className="lx-steps" aria-label={`Steps of sequence ${name}`}>
          {sequence.map((t, i) => (
            <li key={i}>
              <span className="mono">{t}</span>
              <button
                type="button"
                className="secondary lx-small"
                aria-label={`Remove step ${i + 1} (${t}) of sequence ${name}`}
                onClick={() => onChange(sequence.filter((_, j) => j !== i))}
              >
                ×
              </button>
            </li>
          ))}
        </ol>
      )}
      <div className="row">
        <label htmlFor={selectId}>Task for sequence {name}</label>
        <select id={selectId} value={task} onChange={(e) => setTask(e.target.value)}>
          {tasks.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
        <button type="button" className="secondary" disabled={!task} onClick={() => onChange([...sequence, task])}>
          Add step to {name}
        </button>
        {sequence.length > 0 && (
          <button type="button" className="secondary" onClick={() => onChange([])}>
            Clear {name}
          </button>
        )}
        {onRemove && (
          <button type="button" className="secondary" onClick={onRemove}>
            Remove sequence {name}
          </button>
        )}
      </div>
    </fieldset>
  );
}
