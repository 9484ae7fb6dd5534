import { useId, useState } from "react";

const FILTER_FROM = 24; // a vocabulary this long gets a filter box

/** A labelled group of task checkboxes (a fieldset), with All / None and, for long vocabularies, a filter. */
export function TaskChecklist(props: {
  legend: string;
  tasks: string[];
  selected: string[];
  onChange: (selected: string[]) => void;
}) {
  const { legend, tasks, selected, onChange } = props;
  const [filter, setFilter] = useState("");
  const filterId = useId();
  const chosen = new Set(selected);
  const shown = filter ? tasks.filter((t) => t.toLowerCase().includes(filter.toLowerCase())) : tasks;
  const toggle = (task: string, on: boolean) =>
    onChange(tasks.filter((t) => (t === task ? on : chosen.has(t))));
  return (
    <fieldset className="lx-checklist">
      <legend>
        {legend} <span className="muted">({selected.length} of {tasks.length})</span>
      </legend>
      <div className="row">
        <button
          type="button"
          className="secondary lx-small"
          onClick={() => onChange(tasks.filter((t) => chosen.has(t) || shown.includes(t)))}
        >
          All{filter ? " shown" : ""}
          <span className="lx-sr-only"> {legend.toLowerCase()}</span>
        </button>
        <button type="button" className="secondary lx-small" onClick={() => onChange([])}>
          None<span className="lx-sr-only"> of {legend.toLowerCase()}</span>
        </button>
        {tasks.length >= FILTER_FROM && (
          <>
            <label htmlFor={filterId} className="lx-sr-only">
              Filter {legend.toLowerCase()}
            </label>
            <input
              id={filterId}
              type="text"
              placeholder="filter tasks"
              value={filter}
              onChange={(e) => setFilter(e.target.value)}
            />
          </>
        )}
      </div>
      <div className="lx-checks">
        {shown.map((task) => (
          <label key={task} className="lx-check">
            <input type="checkbox" checked={chosen.has(task)} onChange={(e) => toggle(task, e.target.checked)} />
            <span className="mono">{task}</span>
          </label>
        ))}
        {shown.length === 0 && <p className="muted">No task matches.</p>}
      </div>
    </fieldset>
  );
}
