import { useCallback, useEffect, useId, useState } from "react";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { navigate } from "../../router";
import { deleteLearner, getLearner, type Learner } from "./api";
import { AddEvent } from "./AddEvent";
import { CurriculumPanel } from "./CurriculumPanel";
import { ForecastPanel } from "./ForecastPanel";
import { when } from "./format";
import { History } from "./History";
import { PredictionsPanel } from "./PredictionsPanel";

/** One learner: its record, history, new events, predictions, forecasts and curriculum search. */
export function LearnerView(props: { learnerId: string; tasks: string[]; onChanged: () => void }) {
  const { learnerId, tasks, onChanged } = props;
  const [learner, load, setLearner] = useCall(getLearner);
  // Candidate sequences of the forecast, kept here so a searched curriculum can become one.
  const [sequences, setSequences] = useState<string[][]>([[]]);
  const titleId = useId();

  useEffect(() => {
    void load(learnerId);
  }, [load, learnerId]);

  const appended = useCallback(
    (next: Learner) => {
      setLearner(next);
      onChanged();
    },
    [setLearner, onChanged],
  );

  const record = learner.data;
  return (
    <article className="stack lx-learner" aria-labelledby={titleId}>
      <section className="lx-head">
        <h2 id={titleId}>
          Learner <span className="mono">{learnerId}</span>
        </h2>
        <Status loading={learner.loading && !record} error={learner.error} label="Loading the learner" />
        {record && (
          <>
            <dl className="lx-facts">
              <div>
                <dt>Events</dt>
                <dd data-testid="history-len">{record.history_len}</dd>
              </div>
              <div>
                <dt>In the model's context</dt>
                <dd>{record.context_len}</dd>
              </div>
              <div>
                <dt>Created</dt>
                <dd>{when(record.created_at)}</dd>
              </div>
              <div>
                <dt>Updated</dt>
                <dd>{when(record.updated_at)}</dd>
              </div>
            </dl>
            <DeleteLearner learnerId={learnerId} onDeleted={onChanged} />
          </>
        )}
      </section>
      {record && (
        <>
          <History learnerId={learnerId} historyLen={record.history_len} />
          <div className="grid">
            <AddEvent
              learner={record}
              tasks={tasks}
              onAppended={appended}
              onReload={() => void load(learnerId)}
            />
            <PredictionsPanel learnerId={learnerId} tasks={tasks} historyLen={record.history_len} />
          </div>
          <ForecastPanel learnerId={learnerId} tasks={tasks} sequences={sequences} onSequences={setSequences} />
          <CurriculumPanel
            learnerId={learnerId}
            tasks={tasks}
            onForecast={(best) => {
              setSequences((current) => {
                const kept = current.filter((s) => s.length > 0).slice(0, 2);
                return [...kept, best];
              });
              document.getElementById("forecast")?.scrollIntoView({ behavior: "smooth" });
            }}
          />
        </>
      )}
    </article>
  );
}

function DeleteLearner({ learnerId, onDeleted }: { learnerId: string; onDeleted: () => void }) {
  const [confirming, setConfirming] = useState(false);
  const [deleted, remove] = useCall(deleteLearner);
  if (!confirming)
    return (
      <button type="button" className="secondary" onClick={() => setConfirming(true)}>
        Delete learner…
      </button>
    );
  return (
    <div className="row" role="group" aria-label="Confirm deletion">
      <span>Delete {learnerId} and its whole history?</span>
      <button
        type="button"
        className="danger"
        disabled={deleted.loading}
        onClick={async () => {
          if (await remove(learnerId)) {
            onDeleted();
            navigate("learners");
          }
        }}
      >
        Delete
      </button>
      <button type="button" className="secondary" onClick={() => setConfirming(false)}>
        Keep
      </button>
      <Status loading={deleted.loading} error={deleted.error} label="Deleting" />
    </div>
  );
}
