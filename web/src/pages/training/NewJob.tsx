import { useId, useState } from "react";
import { ApiError, api, call } from "../../api/client";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import { navigate } from "../../router";
import { exampleText, kindInfo, KINDS, type KindName, QUEUES, type QueueName } from "./kinds";

async function submit(kind: KindName, config: Record<string, unknown>, queue: QueueName | "") {
  return call(api.POST("/v1/jobs", { body: { kind, config, queue: queue || undefined } }));
}

/** Parses the editor's text: the config object, or an ApiError-shaped message (no request is made). */
function parseConfig(text: string): Record<string, unknown> | ApiError {
  try {
    const value: unknown = JSON.parse(text);
    if (!value || typeof value !== "object" || Array.isArray(value))
      return new ApiError("the config must be a JSON object", 0, "config");
    return value as Record<string, unknown>;
  } catch (e) {
    return new ApiError(`the config is not valid JSON: ${(e as Error).message}`, 0, "config");
  }
}

/** Submit a job: a kind, its config as JSON (started from the kind's example), a queue. The API's
 * validation errors (422 naming the field, 404 for a dataset or model the tenant lacks) are shown under
 * the editor; on success the job's page opens. */
export function NewJob() {
  const [kind, setKind] = useState<KindName>("dfm_pretrain");
  const [queue, setQueue] = useState<QueueName | "">("");
  const [text, setText] = useState(() => exampleText("dfm_pretrain"));
  const [localError, setLocalError] = useState<ApiError>();
  const [sent, send] = useCall(submit);
  const ids = { kind: useId(), queue: useId(), config: useId(), hint: useId(), error: useId() };
  const info = kindInfo(kind);
  const error = localError ?? sent.error;

  const chooseKind = (next: KindName) => {
    // Keep the user's edits; an untouched example follows the kind.
    if (text.trim() === exampleText(kind).trim() || !text.trim()) setText(exampleText(next));
    setKind(next);
    setLocalError(undefined);
  };

  return (
    <>
      <h1>New training job</h1>
      <form
        className="panel stack new-job"
        aria-label="New job"
        onSubmit={async (e) => {
          e.preventDefault();
          const config = parseConfig(text);
          if (config instanceof ApiError) {
            setLocalError(config);
            return;
          }
          setLocalError(undefined);
          const job = await send(kind, config, queue);
          if (job) navigate("training", "jobs", job.job_id);
        }}
      >
        <div className="row">
          <label htmlFor={ids.kind}>Kind</label>
          <select id={ids.kind} value={kind} onChange={(e) => chooseKind(e.target.value as KindName)}>
            {KINDS.map((k) => (
              <option key={k.name} value={k.name}>
                {k.name}
              </option>
            ))}
          </select>
          <label htmlFor={ids.queue}>Queue</label>
          <select id={ids.queue} value={queue} onChange={(e) => setQueue(e.target.value as QueueName | "")}>
            <option value="">the kind's default ({info?.queue ?? "gpu"})</option>
            {QUEUES.map((q) => (
              <option key={q} value={q}>
                {q}
              </option>
            ))}
          </select>
        </div>
        {info && <p className="muted">{info.summary}.</p>}
        <label htmlFor={ids.config}>Config (JSON)</label>
        <textarea
          id={ids.config}
          className="mono config-editor"
          rows={16}
          spellCheck={false}
          value={text}
          aria-describedby={`${ids.hint}${error ? ` ${ids.error}` : ""}`}
          aria-invalid={error ? true : undefined}
          onChange={(e) => {
            setText(e.target.value);
            setLocalError(undefined);
          }}
        />
        <small id={ids.hint} className="muted">
          Omitted fields take their defaults; unknown fields are refused. Started from a small example of the
          kind: edit paths and model names to what your deployment has.
        </small>
        {error && (
          <div id={ids.error} className="config-error">
            <Status error={error} label={error.status ? `Not submitted (HTTP ${error.status})` : "Not submitted"} />
            {error.field && (
              <p>
                Field: <code data-testid="error-field">{error.field}</code>
              </p>
            )}
          </div>
        )}
        <div className="row">
          <button type="submit" disabled={sent.loading}>
            {sent.loading ? "Submitting…" : "Submit job"}
          </button>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setText(exampleText(kind));
              setLocalError(undefined);
            }}
          >
            Load the example
          </button>
          <Status loading={sent.loading} label="Submitting the job" />
        </div>
      </form>
    </>
  );
}
