import { useEffect, useState } from "react";
import { ApiError } from "../../api/client";
import { Status } from "../../components/Status";
import { isAdapter, type ChatSettings, type ServedModel } from "./api";
import { Answer } from "./Answer";
import { useStream } from "./useStream";

/** One prompt sent to an adapter and to its base model at once (same settings and seed), the two answers
 * streaming side by side. */
export function Compare(props: {
  models: ServedModel[];
  settings: ChatSettings;
  preferred?: string;
  onSettled: () => void;
}) {
  const { models, settings, preferred, onSettled } = props;
  const adapters = models.filter(isAdapter);
  const [chosen, setAdapter] = useState(preferred ?? "");
  const [prompt, setPrompt] = useState("");
  const [asked, setAsked] = useState<{ base: string; adapter: string } | null>(null);
  const [invalid, setInvalid] = useState<ApiError>();
  const left = useStream();
  const right = useStream();
  // the default is derived, not set by an effect that could undo a pick made as soon as the options appeared
  const adapter = chosen || adapters[0]?.id || "";
  const base = adapters.find((m) => m.id === adapter)?.base ?? "";
  const streaming = left.streaming || right.streaming;

  useEffect(() => {
    if (preferred) setAdapter(preferred);
  }, [preferred]);

  function compare() {
    const text = prompt.trim();
    if (!text || !adapter || !base) {
      setInvalid(new ApiError(!text ? "Type a prompt to compare first" : "Pick an adapter to compare", 0));
      return;
    }
    setInvalid(undefined);
    setAsked({ base, adapter });
    const messages = [{ role: "user" as const, content: text }];
    void left.start(base, messages, settings);
    void right.start(adapter, messages, settings);
  }

  const columns = asked
    ? [
        { title: "Base", model: asked.base, s: left },
        { title: "Adapter", model: asked.adapter, s: right },
      ]
    : [];

  return (
    <section aria-labelledby="compare-title" className="compare">
      <h2 id="compare-title">Compare base vs adapter</h2>
      {adapters.length === 0 ? (
        <p className="muted">No adapters are served for your tenant: nothing to compare.</p>
      ) : (
        <form
          className="stack"
          onSubmit={(e) => {
            e.preventDefault();
            compare();
          }}
        >
          <div className="row">
            <label htmlFor="compare-adapter">Adapter to compare</label>
            <select id="compare-adapter" value={adapter} onChange={(e) => setAdapter(e.target.value)}>
              {adapters.map((m) => (
                <option key={m.id} value={m.id}>
                  {m.id}
                </option>
              ))}
            </select>
            <span className="muted">against its base {base || "(unknown)"}</span>
          </div>
          <label htmlFor="compare-prompt">Prompt to compare</label>
          <textarea id="compare-prompt" rows={2} value={prompt} onChange={(e) => setPrompt(e.target.value)} />
          <Status error={invalid} />
          <div className="row">
            <button type="submit" disabled={streaming}>
              Compare
            </button>
            <button
              type="button"
              className="danger"
              disabled={!streaming}
              onClick={() => {
                left.stop();
                right.stop();
              }}
            >
              Stop both
            </button>
          </div>
        </form>
      )}
      {columns.length > 0 && (
        <div className="compare-columns">
          {columns.map(({ title, model, s }) => (
            <div key={title} className="compare-column" data-testid={`compare-${title.toLowerCase()}`} aria-busy={s.streaming}>
              <h3>
                {title}: {model}
              </h3>
              {s.answer && (
                <Answer
                  label={`the ${title.toLowerCase()} answer`}
                  model={model}
                  models={models}
                  text={s.answer.text}
                  completionId={s.answer.completionId}
                  finishReason={s.answer.finishReason}
                  stopped={s.stopped}
                  streaming={s.streaming}
                  onSettled={onSettled}
                />
              )}
              <Status loading={s.streaming && !s.answer?.text} error={s.error} label={`${title} answer`} />
            </div>
          ))}
        </div>
      )}
    </section>
  );
}
