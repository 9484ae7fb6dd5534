import { useCallback, useEffect, useId, useState } from "react";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { href } from "../../router";
import { distillNow, getFeedback, submitFeedback, type FeedbackItem } from "./api";

const POLL_MS = 1000;
const SETTLED = new Set(["applied", "failed"]);

/** Feedback on one answer (→ the adapter's next SDPO job): a text box, then the submitted items with their
 * live state and job. `adapters` are the tenant's adapters that could learn from it (over the answer's base);
 * left at "the one that answered", the API decides (and refuses a base model's answer, which had none). */
export function FeedbackBox(props: {
  completionId: string | null;
  label: string;
  adapters: string[];
  defaultAdapter?: string;
  onSettled?: () => void;
}) {
  const { completionId, label, adapters, defaultAdapter, onSettled } = props;
  const id = useId();
  const [text, setText] = useState("");
  const [adapter, setAdapter] = useState("");
  const [items, setItems] = useState<string[]>([]);
  const [sent, send] = useCall(submitFeedback);

  if (!completionId)
    return <p className="muted feedback-none">No completion id (the answer was stopped or not recorded): no feedback.</p>;

  return (
    <div className="feedback">
      <form
        className="stack"
        onSubmit={async (e) => {
          e.preventDefault();
          const item = await send(completionId, text, adapter || undefined);
          if (item) {
            setItems((list) => [item.feedback_id, ...list]);
            setText("");
          }
        }}
      >
        <label htmlFor={`${id}-text`}>Feedback on {label}</label>
        <textarea
          id={`${id}-text`}
          rows={2}
          value={text}
          placeholder="What should the answer have done differently?"
          onChange={(e) => setText(e.target.value)}
        />
        <div className="row">
          <label htmlFor={`${id}-adapter`}>Adapter to train</label>
          <select id={`${id}-adapter`} value={adapter} onChange={(e) => setAdapter(e.target.value)}>
            <option value="">{defaultAdapter ? `the one that answered (${defaultAdapter})` : "the one that answered"}</option>
            {adapters
              .filter((a) => a !== defaultAdapter)
              .map((a) => (
                <option key={a} value={a}>
                  {a}
                </option>
              ))}
          </select>
          <button type="submit" disabled={sent.loading}>
            Send feedback
          </button>
        </div>
        <Status loading={sent.loading} error={sent.error} label="Sending feedback" />
      </form>
      {items.map((feedbackId) => (
        <FeedbackStatus key={feedbackId} feedbackId={feedbackId} onSettled={onSettled} />
      ))}
    </div>
  );
}

/** A feedback item's state, polled until it is applied or failed: pending → training (its job) → applied. */
function FeedbackStatus({ feedbackId, onSettled }: { feedbackId: string; onSettled?: () => void }) {
  const fetchItem = useCallback(() => getFeedback(feedbackId), [feedbackId]);
  const [item, load] = useCall(fetchItem);
  const [distilled, distill] = useCall(distillNow);
  const state = item.data?.state;

  useEffect(() => {
    void load();
  }, [load]);

  useEffect(() => {
    if (state && SETTLED.has(state)) {
      onSettled?.();
      return;
    }
    const timer = window.setTimeout(() => void load(), POLL_MS);
    return () => window.clearTimeout(timer);
    // poll again after every answer (item.data changes identity on each), until it settles
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [item.data, item.error, state]);

  const data: FeedbackItem | undefined = item.data;
  return (
    <div className="feedback-item" data-testid="feedback-item" data-state={state ?? ""}>
      {data ? (
        <>
          <p className="row">
            <span>Feedback</span> <code>{data.feedback_id}</code>
            <span className={`badge ${data.state}`}>{data.state}</span>
            <span className="muted">for {data.adapter}</span>
          </p>
          <p className="muted feedback-text">“{data.feedback}”</p>
          {data.job_id ? (
            <p>
              SDPO job: <a href={href("training", "jobs", data.job_id)}>{data.job_id}</a>
            </p>
          ) : (
            <p className="row">
              <span className="muted">Waiting for a batch of feedback to start the adapter's job.</span>
              {data.state === "pending" && (
                <button
                  type="button"
                  className="secondary"
                  disabled={distilled.loading}
                  onClick={async () => {
                    if (await distill(data.adapter)) void load();
                  }}
                >
                  Train now
                </button>
              )}
            </p>
          )}
          {data.version != null && <p className="ok">Trained into version {data.version}.</p>}
          {data.error && <p className="error">{data.error}</p>}
        </>
      ) : null}
      <Status loading={item.loading && !data} error={item.error} label="Feedback state" />
      <Status loading={distilled.loading} error={distilled.error} label="Starting the job" />
    </div>
  );
}
