import { useId, useState } from "react";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { appendEvent, type Learner } from "./api";
import { outcomeText, percent } from "./format";

const OUTCOMES = [
  { value: 1, label: "Correct (1)" },
  { value: 0, label: "Incorrect (0)" },
  { value: 0.5, label: "Partial (0.5)" },
];

/** Appends one event (a task and its outcome) to the history, safely: only onto the history shown (a
 * concurrent write answers 409); shows what the model predicted for it just before. */
export function AddEvent(props: {
  learner: Learner;
  tasks: string[];
  onAppended: (learner: Learner) => void;
  onReload: () => void;
}) {
  const { learner, tasks, onAppended, onReload } = props;
  const [chosen, setTask] = useState(""); // "" until the user picks one
  const task = chosen || tasks[0] || ""; // derived: a default set by an effect could undo an early pick
  const [outcome, setOutcome] = useState(1);
  const [added, append] = useCall(appendEvent);
  const [last, setLast] = useState<{ task: string; outcome: number; prior: number } | null>(null);
  const taskId = useId();
  const titleId = useId();

  return (
    <section aria-labelledby={titleId}>
      <form
        className="stack"
        onSubmit={async (e) => {
          e.preventDefault();
          const result = await append(learner.learner_id, task, outcome, learner.history_len);
          if (result) {
            setLast({ task, outcome, prior: result.prior_probabilities[0] });
            onAppended(result.learner);
          }
        }}
      >
        <h2 id={titleId}>Add an event</h2>
        <label htmlFor={taskId}>Task</label>
        <select id={taskId} value={task} onChange={(e) => setTask(e.target.value)} disabled={!tasks.length}>
          {tasks.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
        <fieldset className="lx-outcomes">
          <legend>Outcome</legend>
          {OUTCOMES.map((o) => (
            <label key={o.value} className="lx-check">
              <input
                type="radio"
                name={`${taskId}-outcome`}
                checked={outcome === o.value}
                onChange={() => setOutcome(o.value)}
              />
              {o.label}
            </label>
          ))}
        </fieldset>
        <div className="row">
          <button type="submit" disabled={added.loading || !task}>
            Add event
          </button>
        </div>
        <Status loading={added.loading} error={added.error} label="Adding the event" />
        {added.error?.status === 409 && (
          <div className="row">
            <button type="button" className="secondary" onClick={onReload}>
              Reload the learner
            </button>
          </div>
        )}
        {last && !added.loading && !added.error && (
          <p className="ok" role="status">
            Added {last.task}: {outcomeText(last.outcome)}. Just before, the model gave it {percent(last.prior)}.
          </p>
        )}
      </form>
    </section>
  );
}
