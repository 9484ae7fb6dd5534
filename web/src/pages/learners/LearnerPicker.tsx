import { useEffect, useId, useState } from "react";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { href, navigate } from "../../router";
import { type LearnerSummary, listLearners, registerLearner } from "./api";
import { newLearnerId, when } from "./format";

const FILTER_DELAY_MS = 250;
const LEARNER_ID = /^[A-Za-z0-9._:@-]+$/; // the API's rule: no learner id holds any other character

/** Register a learner, or pick one of the tenant's: a list filtered by id prefix (server-side), a page at a
 * time; Enter in the filter box opens exactly the id typed. */
export function LearnerPicker(props: { selected?: string; version: number; onRegistered: () => void }) {
  const { selected, version, onRegistered } = props;
  return (
    <div className="stack lx-picker">
      <RegisterForm onRegistered={onRegistered} />
      <LearnerList selected={selected} version={version} />
    </div>
  );
}

function RegisterForm({ onRegistered }: { onRegistered: () => void }) {
  const [draft, setDraft] = useState("");
  const [registered, register] = useCall(registerLearner);
  const id = useId();
  return (
    <form
      className="panel stack"
      aria-labelledby={`${id}-title`}
      onSubmit={async (e) => {
        e.preventDefault();
        const learner = await register(draft.trim());
        if (learner) {
          setDraft("");
          onRegistered();
          navigate("learners", learner.learner_id);
        }
      }}
    >
      <h2 id={`${id}-title`}>Register a learner</h2>
      <label htmlFor={id}>New learner id</label>
      <div className="row">
        <input
          id={id}
          type="text"
          required
          maxLength={128}
          pattern="[A-Za-z0-9._:@\-]+"
          aria-describedby={`${id}-hint`}
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
        />
        <button type="button" className="secondary" onClick={() => setDraft(newLearnerId())}>
          Suggest id
        </button>
      </div>
      <small id={`${id}-hint`} className="muted">
        Letters, digits and . _ : @ - (up to 128); the history starts empty.
      </small>
      <div className="row">
        <button type="submit" disabled={registered.loading}>
          Register
        </button>
      </div>
      <Status loading={registered.loading} error={registered.error} label="Registering" />
    </form>
  );
}

function LearnerList({ selected, version }: { selected?: string; version: number }) {
  const [filter, setFilter] = useState("");
  const [prefix, setPrefix] = useState("");
  const [shown, setShown] = useState<LearnerSummary[]>([]);
  const [page, load] = useCall(listLearners);
  const filterId = useId();
  const titleId = useId();

  // The filter is applied as the user types, once they pause.
  useEffect(() => {
    const timer = window.setTimeout(() => setPrefix(filter.trim()), FILTER_DELAY_MS);
    return () => window.clearTimeout(timer);
  }, [filter]);

  const valid = !prefix || LEARNER_ID.test(prefix);

  useEffect(() => {
    if (!valid) return;
    let live = true;
    void load(prefix).then((first) => {
      if (live && first) setShown(first.learners);
    });
    return () => {
      live = false;
    };
  }, [load, prefix, valid, version]);

  const more = async () => {
    const cursor = page.data?.next_cursor;
    if (!cursor) return;
    const next = await load(prefix, cursor);
    if (next) setShown((s) => [...s, ...next.learners]);
  };

  return (
    <section aria-labelledby={titleId} className="stack">
      <h2 id={titleId}>Your learners</h2>
      <form
        className="stack"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          const id = filter.trim();
          if (id) navigate("learners", id);
        }}
      >
        <label htmlFor={filterId}>Filter by id, or open an id</label>
        <div className="row">
          <input
            id={filterId}
            type="text"
            placeholder="id prefix"
            maxLength={128}
            value={filter}
            onChange={(e) => setFilter(e.target.value)}
          />
          <button type="submit" className="secondary" disabled={!filter.trim()}>
            Open
          </button>
        </div>
      </form>
      {!valid ? (
        <p className="muted" role="status">
          No learner id starts with “{prefix}”: ids hold only letters, digits and . _ : @ -
        </p>
      ) : (
        <>
          <Status loading={page.loading && shown.length === 0} error={page.error} label="Loading learners" />
          {!page.loading && !page.error && shown.length === 0 && (
            <p className="muted">
              {prefix ? `No learner id starts with “${prefix}”.` : "No learners yet: register one."}
            </p>
          )}
        </>
      )}
      {valid && shown.length > 0 && (
        <ul className="lx-learners" aria-label="Learners">
          {shown.map((learner) => (
            <li key={learner.learner_id}>
              <a
                href={href("learners", learner.learner_id)}
                aria-current={learner.learner_id === selected ? "page" : undefined}
              >
                <span className="mono lx-id">{learner.learner_id}</span>
                <span className="muted lx-meta">
                  {learner.history_len} event{learner.history_len === 1 ? "" : "s"} · created {when(learner.created_at)}
                </span>
              </a>
            </li>
          ))}
        </ul>
      )}
      {valid && page.data?.next_cursor && (
        <button type="button" className="secondary" onClick={more} disabled={page.loading}>
          Load more learners
        </button>
      )}
    </section>
  );
}
