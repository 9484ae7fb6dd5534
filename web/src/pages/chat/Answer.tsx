import { adapterName, isAdapter, type ServedModel } from "./api";
import { FeedbackBox } from "./FeedbackBox";

/** The base model an answer's model runs on (itself for a base model), and the adapters over it. */
export function lineage(model: string, models: ServedModel[]) {
  const served = models.find((m) => m.id === model);
  const adapter = isAdapter(served) ? adapterName(model) : undefined;
  const base = adapter ? (served?.base ?? undefined) : model;
  const adapters = models.filter((m) => isAdapter(m) && m.base === base).map((m) => adapterName(m.id));
  return { adapter, base, adapters };
}

/** One answer bubble: who answered, the text (growing while it streams), its completion id, and the
 * feedback box once it is complete. */
export function Answer(props: {
  label: string;
  model: string;
  models: ServedModel[];
  text: string;
  completionId: string | null;
  finishReason: string | null;
  stopped?: boolean;
  streaming?: boolean;
  onSettled?: () => void;
}) {
  const { label, model, models, text, completionId, finishReason, stopped, streaming, onSettled } = props;
  const { adapter, base, adapters } = lineage(model, models);
  return (
    <article className="answer" aria-label={`${label} from ${model}`} data-testid="answer">
      <div className="msg-who">
        {model}
        {adapter && base && <span className="muted small"> (adapter over {base})</span>}
      </div>
      <div className="msg-text" data-testid="answer-text">
        {text}
        {streaming && <span className="cursor" aria-hidden="true" />}
      </div>
      {!text && !streaming && <p className="muted small">(empty answer)</p>}
      {!streaming && (
        <>
          <p className="msg-meta muted small">
            {stopped ? "stopped" : finishReason === "length" ? "cut at max tokens" : "finished"}
            {completionId && (
              <>
                {" · completion "}
                <code data-testid="completion-id">{completionId}</code>
              </>
            )}
          </p>
          <FeedbackBox
            completionId={completionId}
            label={label}
            adapters={adapters}
            defaultAdapter={adapter}
            onSettled={onSettled}
          />
        </>
      )}
    </article>
  );
}
