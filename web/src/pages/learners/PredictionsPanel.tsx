import { useId, useState } from "react";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { predict } from "./api";
import { percent } from "./format";
import { TaskChecklist } from "./TaskChecklist";

/** P(correct) on chosen tasks, conditioned on the committed history, as labelled bars. */
export function PredictionsPanel(props: { learnerId: string; tasks: string[]; historyLen: number }) {
  const { learnerId, tasks, historyLen } = props;
  const [chosen, setChosen] = useState<string[]>([]);
  const [result, run] = useCall(predict);
  const titleId = useId();
  const stale = result.data && result.data.history_len !== historyLen;
  return (
    <section aria-labelledby={titleId} className="stack">
      <h2 id={titleId}>Predictions</h2>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault();
          void run(learnerId, chosen);
        }}
      >
        <TaskChecklist legend="Tasks to predict" tasks={tasks} selected={chosen} onChange={setChosen} />
        <div className="row">
          <button type="submit" disabled={result.loading}>
            Predict
          </button>
          {chosen.length === 0 && <span className="muted">Choose at least one task.</span>}
        </div>
      </form>
      <Status loading={result.loading} error={result.error} label="Predicting" />
      {result.data && (
        <>
          <p className="muted">
            Given {result.data.history_len} event{result.data.history_len === 1 ? "" : "s"}
            {stale ? " (the history has grown since: predict again)" : ""}.
          </p>
          <ul className="lx-bars" aria-label="Predicted P(correct)">
            {result.data.predictions.map((p, i) => (
              <li key={`${p.task}-${i}`}>
                <span className="mono lx-bar-label">{p.task}</span>
                <span className="lx-bar" aria-hidden="true">
                  <span style={{ width: `${Math.max(0, Math.min(1, p.probability)) * 100}%` }} />
                </span>
                <span className="lx-bar-value">{percent(p.probability)}</span>
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
