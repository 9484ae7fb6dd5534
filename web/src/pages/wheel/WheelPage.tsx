import { useEffect, useId, useMemo, useRef, useState, type FormEvent } from "react";
import { ApiError } from "../../api/client";
import { Status } from "../../components/Status";
import { useCall } from "../../components/useCall";
import type { PageProps } from "../types";
import {
  appendToken,
  createSession,
  DEFAULT_SETTINGS,
  deleteSession,
  getDistribution,
  listLanguageModels,
  setPrompt as putPrompt,
  undo,
  type Distribution,
  type HistoryEntry,
  type LanguageModel,
  type Session,
  type Settings,
} from "./api";
import { GeneratedText } from "./GeneratedText";
import { landingAngle, landingRotation, wedgesOf } from "./geometry";
import { SettingsPanel } from "./SettingsPanel";
import { percent, tokenLabel } from "./tokens";
import { WedgeList } from "./WedgeList";
import { Wheel } from "./Wheel";
import "./wheel.css";

const DEBOUNCE_MS = 250;
const SPIN_MS = 1500;
const LANDED_PAUSE_MS = 500;
const DEFAULT_MODEL = "lm-demo";

interface Shown {
  dist: Distribution;
  settings: Settings;
}

interface Action {
  label: string;
  loading: boolean;
  error?: ApiError;
}

interface Draw {
  kind: "spin" | "other";
  seed: number;
  entry: HistoryEntry;
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function asApiError(e: unknown): ApiError {
  return e instanceof ApiError ? e : new ApiError(String((e as Error)?.message ?? e), 0);
}

function reducedMotion(): boolean {
  return window.matchMedia?.("(prefers-reduced-motion: reduce)").matches ?? false;
}

/** Whether the session was started with the modulation the settings ask for (it is fixed per session). */
function gatingMatches(session: Session, s: Settings): boolean {
  const g = session.gating;
  if (!s.gated) return !g;
  return !!g && g.mode === "fixed" && g.modulation === s.modulation;
}

/** The model to start on: the demo LM when served, else the first one listed. */
function defaultModel(models: LanguageModel[]): string {
  const demo = models.find((m) => m.name.startsWith(DEFAULT_MODEL) && m.kind !== "adapter");
  return (demo ?? models[0])?.name ?? "";
}

export function WheelPage(_props: PageProps) {
  const [models, loadModels] = useCall(listLanguageModels);
  const [model, setModel] = useState("");
  const [prompt, setPrompt] = useState("Once upon a time");
  const [settings, setSettings] = useState<Settings>(DEFAULT_SETTINGS);
  const [session, setSession] = useState<Session>();
  const [shown, setShown] = useState<Shown>();
  const [dist, setDist] = useState<{ loading: boolean; error?: ApiError }>({ loading: false });
  const [action, setAction] = useState<Action>();
  const [cleanup, setCleanup] = useState<ApiError>();
  const [seedText, setSeedText] = useState("1");
  const [rotation, setRotation] = useState(0);
  const [spinning, setSpinning] = useState(false);
  const [landed, setLanded] = useState<string | null>(null);
  const [hover, setHover] = useState<string | null>(null);
  const [lastDraw, setLastDraw] = useState<Draw>();
  const [removed, setRemoved] = useState<HistoryEntry>();
  const sessionRef = useRef<Session | undefined>(undefined);
  const distTicket = useRef(0);
  const rebuilding = useRef(false);
  const ids = { model: useId(), prompt: useId(), seed: useId() };

  useEffect(() => {
    loadModels().then((list) => list && setModel((m) => m || defaultModel(list)));
  }, [loadModels]);

  useEffect(() => {
    sessionRef.current = session;
  }, [session]);

  // Leaving the page ends its session (the tenant's live sessions are limited).
  useEffect(
    () => () => {
      const s = sessionRef.current;
      if (s) deleteSession(s.session_id).catch(() => undefined);
    },
    [],
  );

  /** Runs one call with its loading and error state shown; undefined when it failed. */
  async function act<T>(label: string, fn: () => Promise<T>): Promise<T | undefined> {
    setAction({ label, loading: true });
    try {
      const result = await fn();
      setAction(undefined);
      return result;
    } catch (e) {
      setAction({ label, loading: false, error: asApiError(e) });
      return undefined;
    }
  }

  function endQuietly(old: Session | undefined) {
    if (!old) return;
    setCleanup(undefined);
    deleteSession(old.session_id).catch((e) => setCleanup(asApiError(e)));
  }

  function replaceSession(next: Session) {
    setSession(next);
    setLanded(null);
    setRemoved(undefined);
  }

  const matches = session ? gatingMatches(session, settings) : true;

  // The distribution follows the session and the settings (debounced while a slider moves).
  useEffect(() => {
    if (!session || !matches) return;
    const ticket = ++distTicket.current;
    setDist((d) => ({ ...d, loading: true }));
    const timer = setTimeout(async () => {
      try {
        const d = await getDistribution(session.session_id, settings);
        if (ticket !== distTicket.current) return;
        setShown({ dist: d, settings });
        setDist({ loading: false });
      } catch (e) {
        if (ticket === distTicket.current) setDist({ loading: false, error: asApiError(e) });
      }
    }, DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [session, settings, matches]);

  // A session's modulation is fixed when it starts: a new one restarts it with the same prompt and tokens.
  useEffect(() => {
    if (!session || matches || rebuilding.current) return;
    const old = session;
    const timer = setTimeout(async () => {
      rebuilding.current = true;
      const next = await act(
        settings.gated
          ? `Restarting the session at modulation ${settings.modulation}`
          : "Restarting the session without gating",
        async () => {
          let s = await createSession(old.model, old.prompt, settings);
          try {
            for (const e of old.generated) {
              const replayed = await appendToken(s.session_id, { tokenId: e.token.id }, settings, s.context_len);
              s = replayed.session;
            }
          } catch (e) {
            deleteSession(s.session_id).catch(() => undefined);
            throw e;
          }
          return s;
        },
      );
      rebuilding.current = false;
      if (next) {
        replaceSession(next);
        endQuietly(old);
      }
    }, DEBOUNCE_MS);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [session, settings, matches]);

  async function start(e: FormEvent) {
    e.preventDefault();
    const old = session;
    const sameKind = old && old.model === model && gatingMatches(old, settings);
    const next = sameKind
      ? await act("Setting the prompt", () => putPrompt(old.session_id, prompt))
      : await act("Starting a session", () => createSession(model, prompt, settings));
    if (!next) return;
    replaceSession(next);
    setLastDraw(undefined);
    if (!sameKind) {
      setShown(undefined);
      endQuietly(old);
    }
  }

  const wedges = useMemo(() => (shown ? wedgesOf(shown.dist) : []), [shown]);
  // A new distribution is a new wheel: it is drawn from the pointer, clockwise, most likely first.
  useEffect(() => {
    setRotation(0);
    setLanded(null);
  }, [shown]);
  const current =
    !!session &&
    !!shown &&
    matches &&
    shown.dist.session_id === session.session_id &&
    shown.dist.context_len === session.context_len;
  const busy = !!action?.loading || spinning || dist.loading;
  const canChoose = current && !busy;

  async function pick(tokenId: number) {
    if (!session || !shown) return;
    const { dist: d, settings: s } = shown;
    const r = await act("Appending the token", () => appendToken(session.session_id, { tokenId }, s, d.context_len));
    if (!r) return;
    replaceSession(r.session);
    setLastDraw(undefined);
  }

  async function draw(kind: "spin" | "other") {
    if (!session || !shown) return;
    const seed = Number(seedText);
    if (seedText.trim() === "" || !Number.isInteger(seed)) {
      const error = new ApiError("the seed must be a whole number", 0, "seed");
      setAction({ label: kind === "spin" ? "Spin" : "Draw from Other", loading: false, error });
      return;
    }
    const { dist: d, settings: s } = shown;
    const choice = kind === "spin" ? { spin: true as const, seed } : { fromOther: true as const, seed };
    const r = await act(kind === "spin" ? `Spinning with seed ${seed}` : `Drawing from Other with seed ${seed}`, () =>
      appendToken(session.session_id, choice, s, d.context_len),
    );
    if (!r) return;
    setLastDraw(undefined);
    setRemoved(undefined);
    const key = r.appended.category === "other" ? "other" : `t${r.appended.token.id}`;
    const wedge = wedges.find((w) => w.key === key) ?? wedges.find((w) => !w.token);
    setSpinning(true);
    if (kind === "spin" && wedge) {
      const still = reducedMotion();
      setRotation((at) => landingRotation(at, landingAngle(wedge, seed), still ? 0 : 3));
      await wait(still ? 0 : SPIN_MS);
    }
    setLanded(wedge?.key ?? null);
    setLastDraw({ kind, seed, entry: r.appended });
    setSeedText(String(seed + 1));
    await wait(LANDED_PAUSE_MS);
    setSpinning(false);
    setSession(r.session);
    setRemoved(undefined);
  }

  async function undoLast() {
    if (!session) return;
    const r = await act("Undoing the last token", () => undo(session.session_id));
    if (!r) return;
    replaceSession(r.session);
    setLastDraw(undefined);
    setRemoved(r.removed);
  }

  const modelList = models.data ?? [];
  const shownLanded = landed ?? hover;

  return (
    <div className="wheel-page">
      <h1>Token wheel</h1>
      <section aria-labelledby="start-heading">
        <h2 id="start-heading">Start</h2>
        <form className="stack" onSubmit={start}>
          <div className="row">
            <label htmlFor={ids.model}>Model</label>
            <select
              id={ids.model}
              value={model}
              onChange={(e) => setModel(e.target.value)}
              disabled={!modelList.length}
            >
              {!modelList.length && <option value="">{models.loading ? "loading…" : "none"}</option>}
              {modelList.map((m) => (
                <option key={m.name} value={m.name}>
                  {m.name}
                  {m.kind ? ` (${m.kind}${m.vocab_size ? `, ${m.vocab_size} tokens` : ""})` : ""}
                </option>
              ))}
            </select>
            {models.error && (
              <button type="button" className="secondary" onClick={() => loadModels()}>
                Retry
              </button>
            )}
          </div>
          <Status loading={models.loading} error={models.error} label="Loading the models" />
          <label htmlFor={ids.prompt}>Prompt</label>
          <textarea id={ids.prompt} rows={3} value={prompt} onChange={(e) => setPrompt(e.target.value)} />
          <div className="row">
            <button type="submit" disabled={!model || !!action?.loading || spinning}>
              {session ? "Start over" : "Start"}
            </button>
            {session && (
              <span className="muted">
                Session on <code>{session.model}</code>
                {session.gating ? `, gated at m = ${session.gating.modulation}` : ""}
                {session.model !== model ? ` (starting over switches to ${model})` : ""}
              </span>
            )}
          </div>
        </form>
      </section>

      <Status loading={action?.loading} error={action?.error} label={action?.label} />
      {cleanup && <Status error={cleanup} label="Ending the previous session" />}

      {session && <GeneratedText session={session} />}

      <div className="wheel-layout">
        {session && (
          <>
          <section className="wheel-main" aria-labelledby="wheel-heading">
            <h2 id="wheel-heading">Next token</h2>
            <Status loading={dist.loading && !shown} error={dist.error} label="Loading the distribution" />
            <p className="loading wheel-updating" role="status">
              {dist.loading && shown ? "Updating the wheel…" : ""}
            </p>
            {shown && (
              <>
                <Wheel
                  dist={shown.dist}
                  wedges={wedges}
                  rotation={rotation}
                  spinning={spinning}
                  durationMs={reducedMotion() ? 0 : SPIN_MS}
                  landed={shownLanded}
                  disabled={!canChoose}
                  ready={canChoose}
                  onPick={(w) => (w.token ? pick(w.token.id) : draw("other"))}
                />
                <div className="spin-controls row">
                  <label htmlFor={ids.seed}>Seed</label>
                  <input
                    id={ids.seed}
                    type="number"
                    min={0}
                    step={1}
                    value={seedText}
                    onChange={(e) => setSeedText(e.target.value)}
                    aria-describedby={`${ids.seed}-hint`}
                  />
                  <button type="button" onClick={() => draw("spin")} disabled={!canChoose}>
                    Spin
                  </button>
                  <button
                    type="button"
                    className="secondary"
                    onClick={undoLast}
                    disabled={!session.generated.length || !!action?.loading || spinning}
                  >
                    Undo
                  </button>
                </div>
                <p id={`${ids.seed}-hint`} className="muted hint">
                  The server draws the token with this seed (the same seed on the same text draws the same token); it
                  moves on by one after each draw.
                </p>
                <p aria-live="polite" className="draw-result" data-testid="last-draw">
                  {spinning && !landed && "The wheel is spinning…"}
                  {lastDraw &&
                    `${lastDraw.kind === "spin" ? "Spin" : "Draw from Other"} with seed ${lastDraw.seed}: ` +
                      `${tokenLabel(lastDraw.entry.token)} (${percent(lastDraw.entry.probability)}, ` +
                      `${lastDraw.entry.category === "other" ? "from Other" : "above the threshold"})`}
                  {removed && `Undone: removed ${tokenLabel(removed.token)}.`}
                </p>
              </>
            )}
          </section>
          {shown && (
            <section className="wheel-side" aria-label="Wedges">
              <WedgeList
                dist={shown.dist}
                wedges={wedges}
                landed={shownLanded}
                disabled={!canChoose}
                onPick={pick}
                onDrawOther={() => draw("other")}
                onHover={setHover}
              />
            </section>
          )}
          </>
        )}
        <SettingsPanel settings={settings} onChange={setSettings} step={shown?.dist.gating} />
      </div>

    </div>
  );
}
