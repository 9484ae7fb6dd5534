import { useEffect, useState } from "react";
import { Slider } from "../../components/Slider";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import type { PageProps } from "../types";
import { generate, listLanguageModels, listPolicies, type GatingForm, type GatingMode } from "./api";
import { TokenStrip, Trajectory } from "./Trajectory";
import "./gating.css";

const MODES: { mode: GatingMode; label: string; hint: string }[] = [
  { mode: "none", label: "None", hint: "the temperature and top-k below, no modulation" },
  { mode: "fixed", label: "Fixed", hint: "one modulation m for every token" },
  { mode: "random", label: "Random", hint: "m drawn uniformly per token (from the seed)" },
  { mode: "learned", label: "Learned", hint: "a gating policy chooses m as the text grows" },
];

/** A gated generation: the prompt continued under a gating mode, the text tinted by each token's modulation
 * and the modulation trajectory plotted under it, token by token. */
export function GatingPage(_props: PageProps) {
  const [models, loadModels] = useCall(listLanguageModels);
  const [policies, loadPolicies] = useCall(listPolicies);
  const [result, run] = useCall(generate);
  const [runs, setRuns] = useState(0);
  const [asked, setAsked] = useState<GatingForm | null>(null);
  const [entered, setForm] = useState<GatingForm>({
    prompt: "Once upon a time",
    model: "",
    mode: "fixed",
    modulation: 0.3,
    policy: "",
    temperature: 1,
    topK: 0,
    seed: 7,
    maxTokens: 32,
  });
  const set = <K extends keyof GatingForm>(key: K, value: GatingForm[K]) => setForm((f) => ({ ...f, [key]: value }));

  useEffect(() => {
    void loadModels();
    void loadPolicies();
  }, [loadModels, loadPolicies]);

  const lms = (models.data ?? []).filter((m) => m.kind !== "adapter");
  const policyRefs = policies.data ?? [];
  // the defaults are derived, not set by effects: one could land after (and undo) a pick made early
  const form = {
    ...entered,
    model: entered.model || lms[0]?.name || "",
    policy: entered.policy || policyRefs[0] || "",
  };

  const data = result.data;
  const steps = data?.trajectory ?? [];

  return (
    <div className="gating-page">
      <h1>Gating</h1>
      <section aria-labelledby="gating-form-title">
        <h2 id="gating-form-title">Generate</h2>
        <form
          className="stack"
          onSubmit={async (e) => {
            e.preventDefault();
            const request = form;
            if (await run(request)) {
              setAsked(request);
              setRuns((n) => n + 1);
            }
          }}
        >
          <label htmlFor="gating-prompt">Prompt</label>
          <textarea id="gating-prompt" rows={2} value={form.prompt} onChange={(e) => set("prompt", e.target.value)} />
          <div className="grid">
            <div className="stack">
              <div className="row">
                <label htmlFor="gating-model">Model</label>
                <select
                  id="gating-model"
                  value={form.model}
                  onChange={(e) => set("model", e.target.value)}
                  disabled={!lms.length}
                >
                  {!lms.length && <option value="">{models.loading ? "loading…" : "no models"}</option>}
                  {lms.map((m) => (
                    <option key={m.name} value={m.name}>
                      {m.name}
                    </option>
                  ))}
                </select>
              </div>
              <Status loading={models.loading} error={models.error} label="Loading the models" />
              <fieldset className="modes">
                <legend>Gating mode</legend>
                {MODES.map(({ mode, label, hint }) => {
                  const off = mode === "learned" && !policyRefs.length;
                  return (
                    <label key={mode} className="mode">
                      <input
                        type="radio"
                        name="gating-mode"
                        value={mode}
                        checked={form.mode === mode}
                        disabled={off}
                        onChange={() => set("mode", mode)}
                      />
                      {label}
                      <small className="muted">
                        {" "}
                        — {off ? (policies.loading ? "looking for gating policies…" : "no gating policy registered") : hint}
                      </small>
                    </label>
                  );
                })}
              </fieldset>
              <Status loading={false} error={policies.error} label="Loading the gating policies" />
            </div>
            <div className="stack">
              {form.mode === "fixed" && (
                <Slider
                  label="Modulation"
                  value={form.modulation}
                  min={0}
                  max={1}
                  step={0.05}
                  onChange={(v) => set("modulation", v)}
                  hint="m: 0 conservative (temperature 0.3, top-k 5) to 1 exploratory (temperature 2, top-k 100)"
                />
              )}
              {form.mode === "learned" && (
                <div className="row">
                  <label htmlFor="gating-policy">Policy</label>
                  <select id="gating-policy" value={form.policy} onChange={(e) => set("policy", e.target.value)}>
                    {policyRefs.map((p) => (
                      <option key={p} value={p}>
                        {p}
                      </option>
                    ))}
                  </select>
                </div>
              )}
              {form.mode === "none" && (
                <>
                  <Slider
                    label="Temperature"
                    value={form.temperature}
                    min={0.05}
                    max={2}
                    step={0.05}
                    onChange={(v) => set("temperature", v)}
                  />
                  <Slider
                    label="Top-k"
                    value={form.topK}
                    min={0}
                    max={200}
                    step={1}
                    onChange={(v) => set("topK", v)}
                    hint="0 keeps every token"
                  />
                </>
              )}
              <Slider
                label="Max tokens"
                value={form.maxTokens}
                min={1}
                max={256}
                step={1}
                onChange={(v) => set("maxTokens", v)}
              />
              <div className="row">
                <label htmlFor="gating-seed">Seed</label>
                <input
                  id="gating-seed"
                  type="number"
                  min={0}
                  step={1}
                  inputMode="numeric"
                  placeholder="random"
                  value={form.seed ?? ""}
                  onChange={(e) => {
                    const v = e.target.value.trim() === "" ? null : Number(e.target.value);
                    set("seed", v !== null && Number.isInteger(v) && v >= 0 ? v : null);
                  }}
                  aria-describedby="gating-seed-hint"
                />
                <small id="gating-seed-hint" className="muted">
                  the same seed gives the same text (and, in random mode, the same modulations)
                </small>
              </div>
            </div>
          </div>
          <div className="row">
            <button type="submit" disabled={result.loading || !form.prompt.trim()}>
              Generate
            </button>
            <Status loading={result.loading} error={result.error} label="Generating" />
          </div>
        </form>
      </section>
      {data && (
        <section aria-labelledby="gating-result-title" data-testid="gating-result" data-run={runs}>
          <h2 id="gating-result-title">Result</h2>
          <p className="muted small">
            Run {runs} · <span data-testid="tokens-generated">{data.tokensGenerated}</span> tokens in{" "}
            {Math.round(data.elapsedMs)} ms · {data.model}
            {data.gating && (
              <>
                {" "}
                · gating {data.gating.mode}
                {data.gating.modulation != null && ` (m ${data.gating.modulation})`}
                {data.gating.seed != null && ` (seed ${data.gating.seed})`}
                {data.gating.policy && ` (policy ${data.gating.policy})`}
                {data.gating.gate_signal ? " · m reaches the model's gates" : " · m through sampling only"}
                {data.gating.lm_mismatch && ` · the policy was trained on ${data.gating.policy_lm}`}
              </>
            )}
          </p>
          <h3 className="small-heading">Generated text (after the prompt, in grey)</h3>
          <p className="generated">
            <span className="prompt muted">{asked?.prompt}</span>
            <span data-testid="generated-text">{steps.length ? <TokenStrip steps={steps} /> : data.text}</span>
          </p>
          {steps.length ? (
            <>
              <p className="legend muted small">
                Tokens tinted by m: <span className="tok" style={{ background: "hsl(210 85% 90%)" }}>0</span> conservative
                … <span className="tok" style={{ background: "hsl(25 85% 82%)" }}>1</span> exploratory (hover a token for
                its step, or see the table).
              </p>
              <Trajectory steps={steps} />
            </>
          ) : (
            <p className="muted">No modulation trajectory: gating mode none samples with the request's own settings.</p>
          )}
        </section>
      )}
    </div>
  );
}
