import { useCallback, useEffect, useState } from "react";
import { Slider } from "../../components/Slider";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import type { PageProps } from "../types";
import { AdapterVersions } from "./AdapterVersions";
import { adapterName, isAdapter, listModels, type ChatSettings } from "./api";
import { Compare } from "./Compare";
import { Conversation } from "./Conversation";
import "./chat.css";

const MAX_TOKENS = 512;

/** Chat over the OpenAI-compatible API with any served model or adapter, answers streaming token by token,
 * feedback on each answer (→ the adapter's SDPO job), the adapter's versions and gate results, and a
 * side-by-side comparison of an adapter with its base. */
export function ChatPage(_props: PageProps) {
  const [models, loadModels] = useCall(listModels);
  const [chosen, setModel] = useState(""); // "" until the user picks one
  const [maxTokens, setMaxTokens] = useState(64);
  const [temperature, setTemperature] = useState(0.8);
  const [seed, setSeed] = useState("");
  const [refresh, setRefresh] = useState(0);
  const bumped = useCallback(() => setRefresh((n) => n + 1), []);

  useEffect(() => {
    void loadModels();
  }, [loadModels]);

  const list = models.data ?? [];
  const bases = list.filter((m) => !isAdapter(m));
  const adapters = list.filter(isAdapter);
  // Derived, not set by an effect: an effect that fills in the default could land after (and undo) a pick
  // made as soon as the options appeared.
  const model = chosen || (bases[0] ?? list[0])?.id || "";

  const selected = list.find((m) => m.id === model);
  const parsedSeed = seed.trim() === "" ? null : Number(seed);
  const settings: ChatSettings = {
    maxTokens,
    temperature,
    seed: parsedSeed !== null && Number.isInteger(parsedSeed) && parsedSeed >= 0 ? parsedSeed : null,
  };

  return (
    <div className="chat-page">
      <h1>Chat</h1>
      <section aria-labelledby="chat-settings-title">
        <h2 id="chat-settings-title">Model and sampling</h2>
        <div className="grid">
          <div className="stack">
            <div className="row">
              <label htmlFor="chat-model">Model</label>
              <select
                id="chat-model"
                value={model}
                onChange={(e) => setModel(e.target.value)}
                disabled={!list.length}
                aria-describedby="chat-model-hint"
              >
                {!list.length && <option value="">{models.loading ? "loading…" : "no models"}</option>}
                {bases.length > 0 && (
                  <optgroup label="Base models">
                    {bases.map((m) => (
                      <option key={m.id} value={m.id}>
                        {m.id}
                      </option>
                    ))}
                  </optgroup>
                )}
                {adapters.length > 0 && (
                  <optgroup label="Adapters">
                    {adapters.map((m) => (
                      <option key={m.id} value={m.id}>
                        {m.id}
                      </option>
                    ))}
                  </optgroup>
                )}
              </select>
              <button type="button" className="secondary" onClick={() => void loadModels()} disabled={models.loading}>
                Reload models
              </button>
            </div>
            <small id="chat-model-hint" className="muted">
              {selected && isAdapter(selected)
                ? `An adapter over ${selected.base}: its answers can take feedback.`
                : "A base model: its answers have no adapter to learn from feedback (pick an adapter to teach one)."}
            </small>
            <Status loading={models.loading} error={models.error} label="Loading the models" />
            <div className="row">
              <label htmlFor="chat-seed">Seed</label>
              <input
                id="chat-seed"
                type="number"
                min={0}
                step={1}
                inputMode="numeric"
                placeholder="random"
                value={seed}
                onChange={(e) => setSeed(e.target.value)}
                aria-describedby="chat-seed-hint"
              />
              <small id="chat-seed-hint" className="muted">
                the same seed and settings give the same answer
              </small>
            </div>
          </div>
          <div className="stack">
            <Slider label="Max tokens" value={maxTokens} min={1} max={MAX_TOKENS} step={1} onChange={setMaxTokens} />
            <Slider
              label="Temperature"
              value={temperature}
              min={0}
              max={2}
              step={0.05}
              onChange={setTemperature}
              hint="0 decodes greedily (deterministic); higher is more varied"
            />
          </div>
        </div>
      </section>
      <div className="chat-main">
        <Conversation model={model} models={list} settings={settings} onSettled={bumped} />
        {selected && isAdapter(selected) ? (
          <AdapterVersions name={adapterName(selected.id)} refresh={refresh} />
        ) : (
          <section aria-labelledby="adapter-versions-title">
            <h2 id="adapter-versions-title">Adapter versions</h2>
            <p className="muted">Pick an adapter as the model to see its versions and their gate results.</p>
          </section>
        )}
      </div>
      <Compare
        models={list}
        settings={settings}
        preferred={selected && isAdapter(selected) ? selected.id : undefined}
        onSettled={bumped}
      />
    </div>
  );
}
