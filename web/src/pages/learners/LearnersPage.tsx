import { useCallback, useEffect, useState } from "react";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import type { PageProps } from "../types";
import { listTasks } from "./api";
import { LearnerPicker } from "./LearnerPicker";
import { LearnerView } from "./LearnerView";
import "./learners.css";

/** The learner explorer: `#/learners` to register or pick a learner, `#/learners/<id>` to explore one. */
export function LearnersPage({ route }: PageProps) {
  const learnerId = route[0];
  const [tasks, loadTasks] = useCall(listTasks);
  // Bumped when a learner is registered, changed or deleted, so the list shows it.
  const [version, setVersion] = useState(0);
  const changed = useCallback(() => setVersion((v) => v + 1), []);

  useEffect(() => {
    void loadTasks();
  }, [loadTasks]);

  return (
    <div className="lx-page">
      <h1>Learners</h1>
      <div className="lx-layout">
        <LearnerPicker selected={learnerId} version={version} onRegistered={changed} />
        <div className="stack lx-main">
          <Status loading={tasks.loading} error={tasks.error} label="Loading the task vocabulary" />
          {learnerId ? (
            <LearnerView key={learnerId} learnerId={learnerId} tasks={tasks.data ?? []} onChanged={changed} />
          ) : (
            <section>
              <h2>No learner chosen</h2>
              <p className="muted">
                Register a learner or pick one from the list to see its history, add events, predict its success
                on tasks, forecast candidate task sequences and search a curriculum.
              </p>
            </section>
          )}
        </div>
      </div>
    </div>
  );
}
