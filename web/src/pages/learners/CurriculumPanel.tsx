import { useEffect, useId, useMemo, useState } from "react";
import { LineChart, type Series } from "../../components/LineChart";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { searchCurriculum } from "./api";
import { percent } from "./format";
import { TaskChecklist } from "./TaskChecklist";

const Y_RANGE: [number, number] = [0, 1];

function NumberField(props: {
  label: string;
  value: number;
  min: number;
  max: number;
  onChange: (value: number) => void;
}) {
  const { label, value, min, max, onChange } = props;
  const id = useId();
  return (
    <div className="lx-field">
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        type="number"
        min={min}
        max={max}
        value={value}
        onChange={(e) => onChange(Math.trunc(Number(e.target.value)) || 0)}
      />
    </div>
  );
}

/** A genetic search for the `depth`-task sequence of candidate tasks that most raises the predicted success
 * on target tasks: the best curriculum, its fitness, and the fitness per generation. Changes nothing. */
export function CurriculumPanel(props: { learnerId: string; tasks: string[]; onForecast: (sequence: string[]) => void }) {
  const { learnerId, tasks, onForecast } = props;
  const [targets, setTargets] = useState<string[]>([]);
  const [candidates, setCandidates] = useState<string[]>(tasks);
  const [depth, setDepth] = useState(4);
  const [population, setPopulation] = useState(16);
  const [generations, setGenerations] = useState(8);
  const [seed, setSeed] = useState(7);
  const [result, run] = useCall(searchCurriculum);
  const titleId = useId();

  useEffect(() => {
    // Only when the vocabulary arrives: an emptied selection stays empty afterwards, and a functional update
    // keeps a pick made before this effect ran.
    if (candidates.length === 0 && tasks.length) setCandidates((c) => (c.length ? c : tasks));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tasks]);

  const series = useMemo<Series[]>(() => {
    const data = result.data;
    if (!data) return [];
    const gens = (n: number) => Array.from({ length: n }, (_, i) => i);
    return [
      { label: "best so far", x: gens(data.best_fitness_curve.length), y: data.best_fitness_curve },
      { label: "population mean", x: gens(data.mean_fitness_curve.length), y: data.mean_fitness_curve, dash: true },
    ];
  }, [result.data]);

  return (
    <section aria-labelledby={titleId} className="stack">
      <h2 id={titleId}>Curriculum search</h2>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault();
          void run(learnerId, {
            target_tasks: targets,
            candidate_tasks: candidates,
            depth,
            population_size: population,
            generations,
            seed,
          });
        }}
      >
        <div className="grid">
          <TaskChecklist legend="Target tasks" tasks={tasks} selected={targets} onChange={setTargets} />
          <TaskChecklist legend="Candidate tasks" tasks={tasks} selected={candidates} onChange={setCandidates} />
        </div>
        <div className="row lx-fields">
          <NumberField label="Depth (tasks)" value={depth} min={1} max={64} onChange={setDepth} />
          <NumberField label="Population" value={population} min={1} max={1024} onChange={setPopulation} />
          <NumberField label="Generations" value={generations} min={0} max={200} onChange={setGenerations} />
          <NumberField label="Search seed" value={seed} min={0} max={2 ** 31} onChange={setSeed} />
        </div>
        <div className="row">
          <button type="submit" disabled={result.loading}>
            Search
          </button>
          {targets.length === 0 && <span className="muted">Choose at least one target task.</span>}
        </div>
      </form>
      <Status loading={result.loading} error={result.error} label="Searching" />
      {result.data && !result.loading && (
        <div className="stack" data-testid="curriculum-result">
          <h3>Best curriculum</h3>
          <ol className="lx-steps" aria-label="Best curriculum">
            {result.data.best_sequence.map((t, i) => (
              <li key={i}>
                <span className="mono">{t}</span>
              </li>
            ))}
          </ol>
          <p>
            Fitness (mean predicted success on the targets after it):{" "}
            <strong data-testid="best-fitness">{percent(result.data.best_fitness)}</strong>, from{" "}
            {result.data.evaluations} evaluations.
          </p>
          <div className="row">
            <button type="button" className="secondary" onClick={() => onForecast(result.data!.best_sequence)}>
              Forecast this curriculum
            </button>
          </div>
          <LineChart
            title="Fitness per generation"
            series={series}
            xLabel="generation"
            yLabel="fitness"
            yRange={Y_RANGE}
            testId="curriculum-fitness"
          />
        </div>
      )}
    </section>
  );
}
