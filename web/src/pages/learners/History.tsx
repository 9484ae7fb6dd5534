import { useEffect, useId, useMemo } from "react";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { getHistory, type HistoryEvent } from "./api";
import { outcomeKind, outcomeSymbol, outcomeText, percent } from "./format";

interface TaskRow {
  task: string;
  attempts: number;
  correct: number;
  incorrect: number;
  partial: number;
  mean: number;
  last: number;
}

function byTask(events: HistoryEvent[]): TaskRow[] {
  const rows = new Map<string, TaskRow>();
  for (const e of events) {
    const row = rows.get(e.task) ?? { task: e.task, attempts: 0, correct: 0, incorrect: 0, partial: 0, mean: 0, last: 0 };
    row.attempts += 1;
    row[outcomeKind(e.outcome)] += 1;
    row.mean += (e.outcome - row.mean) / row.attempts;
    row.last = e.outcome;
    rows.set(e.task, row);
  }
  return [...rows.values()].sort((a, b) => a.task.localeCompare(b.task));
}

/** The committed history: a strip of events in order (task and outcome, in words and colour) and a table of
 * tasks x outcomes. Reloaded whenever the history grows. */
export function History({ learnerId, historyLen }: { learnerId: string; historyLen: number }) {
  const [history, load] = useCall(getHistory);
  const titleId = useId();

  useEffect(() => {
    void load(learnerId, historyLen);
  }, [load, learnerId, historyLen]);

  const events = history.data?.events ?? [];
  const rows = useMemo(() => byTask(events), [events]);
  const first = events[0]?.seq ?? 0;
  const partial = rows.some((r) => r.partial > 0);
  return (
    <section aria-labelledby={titleId} className="stack">
      <h2 id={titleId}>History</h2>
      <Status loading={history.loading && !history.data} error={history.error} label="Loading the history" />
      {history.data && events.length === 0 && <p className="muted">No events yet: add some below.</p>}
      {events.length > 0 && (
        <>
          {first > 0 && (
            <p className="muted">
              Showing the latest {events.length} of {history.data?.history_len} events.
            </p>
          )}
          <ol className="lx-strip" aria-label="Events in order" start={first + 1}>
            {events.map((e) => (
              <li key={e.seq} className={`lx-event ${outcomeKind(e.outcome)}`} title={`#${e.seq + 1}: ${e.task}, ${outcomeText(e.outcome)}`}>
                <span className="mono lx-task">{e.task}</span>
                <span className="lx-outcome">
                  <span aria-hidden="true">{outcomeSymbol(e.outcome)} </span>
                  {outcomeText(e.outcome)}
                </span>
              </li>
            ))}
          </ol>
          <div className="table-wrap">
            <table className="lx-task-table">
              <caption className="lx-sr-only">Outcomes per task</caption>
              <thead>
                <tr>
                  <th scope="col">Task</th>
                  <th scope="col">Tries</th>
                  <th scope="col">Correct</th>
                  <th scope="col">Incorrect</th>
                  {partial && <th scope="col">Partial</th>}
                  <th scope="col">Mean</th>
                  <th scope="col">Last</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr key={r.task}>
                    <th scope="row" className="mono">
                      {r.task}
                    </th>
                    <td>{r.attempts}</td>
                    <td className="lx-correct">{r.correct}</td>
                    <td className="lx-incorrect">{r.incorrect}</td>
                    {partial && <td className="lx-partial">{r.partial}</td>}
                    <td>{percent(r.mean)}</td>
                    <td className={`lx-${outcomeKind(r.last)}`}>
                      <span aria-hidden="true">{outcomeSymbol(r.last)} </span>
                      {outcomeText(r.last)}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
