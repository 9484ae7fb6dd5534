import { Slider } from "../../components/Slider";
import type { Distribution, Settings } from "./api";

/** The wheel's shaping: threshold, the sampling knobs, and the gating modulation (which, when on, sets the
 * knobs itself: the session is then gated and the knobs are shown as the step's modulation set them). */
export function SettingsPanel(props: {
  settings: Settings;
  onChange: (s: Settings) => void;
  step: Distribution["gating"];
}) {
  const { settings: s, onChange, step } = props;
  const set = (patch: Partial<Settings>) => onChange({ ...s, ...patch });
  return (
    <section className="wheel-settings" aria-labelledby="settings-heading">
      <h2 id="settings-heading">Shape the wheel</h2>
      <Slider
        label="Threshold"
        value={s.threshold}
        min={0}
        max={1}
        step={0.005}
        onChange={(threshold) => set({ threshold })}
        hint="Tokens at or above this probability get their own wedge; the rest form Other."
      />
      <fieldset className="knobs" disabled={s.gated}>
        <legend>Sampling knobs{s.gated ? " (set by the modulation)" : ""}</legend>
        <Slider
          label="Temperature"
          value={s.temperature}
          min={0.05}
          max={3}
          step={0.05}
          onChange={(temperature) => set({ temperature })}
        />
        <Slider
          label="Top-k"
          value={s.topK}
          min={0}
          max={200}
          step={1}
          onChange={(topK) => set({ topK })}
          hint="0 = off"
        />
        <Slider
          label="Top-p"
          value={s.topP}
          min={0.05}
          max={1}
          step={0.01}
          onChange={(topP) => set({ topP })}
          hint="1 = off"
        />
        <Slider
          label="Repetition penalty"
          value={s.repetitionPenalty}
          min={1}
          max={3}
          step={0.05}
          onChange={(repetitionPenalty) => set({ repetitionPenalty })}
          hint="1 = off"
        />
      </fieldset>
      <fieldset className="gating">
        <legend>Gating</legend>
        <label className="check">
          <input type="checkbox" checked={s.gated} onChange={(e) => set({ gated: e.target.checked })} /> Modulate
          (a gated session)
        </label>
        <p className="muted hint">
          The modulation m sets the temperature, top-k, top-p and repetition penalty of every step, and the gate
          signal on a gated model.
        </p>
        <fieldset className="plain" disabled={!s.gated}>
          <Slider
            label="Modulation"
            value={s.modulation}
            min={0}
            max={1}
            step={0.05}
            onChange={(modulation) => set({ modulation })}
            hint={
              "0 = conservative, 1 = exploratory. A session keeps the modulation it started with: changing it " +
              "starts a new session and replays the chosen tokens."
            }
          />
        </fieldset>
        {s.gated && step && (
          <p className="muted" data-testid="gating-step">
            This step at m = {step.modulation}: temperature {step.temperature.toFixed(2)}, top-k {step.top_k},
            top-p {step.top_p.toFixed(2)}, repetition penalty {step.repetition_penalty.toFixed(2)}
            {step.gate_signal != null ? `, gate signal ${step.gate_signal.toFixed(2)}` : " (sampling only)"}
          </p>
        )}
      </fieldset>
    </section>
  );
}
