// The token wheel's calls to the native sessions API, through the typed client.
import { api, call, type Schemas } from "../../api/client";

export type Session = Schemas["SessionOut"];
export type Distribution = Schemas["DistributionOut"];
export type HistoryEntry = Schemas["HistoryEntryOut"];
export type TokenProbability = Schemas["TokenProbabilityOut"];
export { listLanguageModels, type LanguageModel } from "../../api/models";

/** What the wheel is shaped by. With `gated`, the session's modulation sets the knobs (they are not sent). */
export interface Settings {
  threshold: number;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  gated: boolean;
  modulation: number;
}

export const DEFAULT_SETTINGS: Settings = {
  threshold: 0.05,
  temperature: 1,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  gated: false,
  modulation: 0.5,
};

export const OTHER_TOP_K = 8;

/** The shaping fields of a call under `s`: the threshold, and the knobs unless the session is gated. */
function shaping(s: Settings) {
  const knobs = s.gated
    ? {}
    : { temperature: s.temperature, top_k: s.topK, top_p: s.topP, repetition_penalty: s.repetitionPenalty };
  return { threshold: s.threshold, ...knobs };
}

function gatingOf(s: Settings): Schemas["GatingIn"] | undefined {
  return s.gated ? { mode: "fixed", modulation: s.modulation } : undefined;
}

export function createSession(model: string, prompt: string, s: Settings): Promise<Session> {
  return call(api.POST("/v1/sessions", { body: { model, prompt, gating: gatingOf(s) } }));
}

export function setPrompt(sessionId: string, prompt: string): Promise<Session> {
  return call(
    api.PUT("/v1/sessions/{session_id}/prompt", { params: { path: { session_id: sessionId } }, body: { prompt } }),
  );
}

export function deleteSession(sessionId: string): Promise<unknown> {
  return call(api.DELETE("/v1/sessions/{session_id}", { params: { path: { session_id: sessionId } } }));
}

export function getDistribution(sessionId: string, s: Settings): Promise<Distribution> {
  return call(
    api.GET("/v1/sessions/{session_id}/distribution", {
      params: { path: { session_id: sessionId }, query: { ...shaping(s), other_top_k: OTHER_TOP_K } },
    }),
  );
}

/** How to choose the next token: one by id, or a seeded draw from the whole wheel or from Other. */
export type Choice = { tokenId: number } | { spin: true; seed: number } | { fromOther: true; seed: number };

export function appendToken(
  sessionId: string,
  choice: Choice,
  s: Settings,
  expectedContextLen: number,
): Promise<Schemas["AppendTokenResponse"]> {
  const chosen =
    "tokenId" in choice
      ? { token_id: choice.tokenId }
      : "spin" in choice
        ? { spin: true as const, seed: choice.seed }
        : { from_other: true as const, seed: choice.seed };
  return call(
    api.POST("/v1/sessions/{session_id}/tokens", {
      params: { path: { session_id: sessionId } },
      body: { ...chosen, ...shaping(s), expected_context_len: expectedContextLen },
    }),
  );
}

export function undo(sessionId: string): Promise<Schemas["UndoResponse"]> {
  return call(api.POST("/v1/sessions/{session_id}/undo", { params: { path: { session_id: sessionId } } }));
}
