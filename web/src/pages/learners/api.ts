// The learner explorer's calls, all through the typed native client: the tenant's learners (list, register,
// read, delete), a learner's history (read, append), predictions, forecasts and curriculum searches, and the
// served model's task vocabulary.
import { api, call, type Schemas } from "../../api/client";

export type LearnerSummary = Schemas["LearnerSummary"];
export type LearnerList = Schemas["LearnerList"];
export type Learner = Schemas["LearnerOut"];
export type LearnerEvents = Schemas["LearnerEvents"];
export type HistoryEvent = Schemas["EventOut"];
export type AppendResult = Schemas["AppendEventsResponse"];
export type Predictions = Schemas["PredictResponse"];
export type Forecast = Schemas["ForecastResponse"];
export type CurriculumSearch = Schemas["CurriculumSearchResponse"];
export type CurriculumSearchRequest = Schemas["CurriculumSearchRequest"];

export const LIST_PAGE = 50;
/** The most events shown; the strip shows the latest ones of a longer history. */
export const HISTORY_PAGE = 500;

export async function listLearners(prefix: string, after?: string): Promise<LearnerList> {
  return call(
    api.GET("/v1/learners", { params: { query: { limit: LIST_PAGE, prefix: prefix || undefined, after } } }),
  );
}

export async function registerLearner(learnerId: string): Promise<Learner> {
  return call(api.POST("/v1/learners", { body: { learner_id: learnerId, history: [] } }));
}

export async function getLearner(learnerId: string): Promise<Learner> {
  return call(api.GET("/v1/learners/{learner_id}", { params: { path: { learner_id: learnerId } } }));
}

/** Deletes the learner and its history; true once done. */
export async function deleteLearner(learnerId: string): Promise<boolean> {
  await call(api.DELETE("/v1/learners/{learner_id}", { params: { path: { learner_id: learnerId } } }));
  return true;
}

/** The latest HISTORY_PAGE events of the learner's history (all of a shorter one), oldest first. */
export async function getHistory(learnerId: string, historyLen: number): Promise<LearnerEvents> {
  const start = Math.max(0, historyLen - HISTORY_PAGE);
  return call(
    api.GET("/v1/learners/{learner_id}/events", {
      params: { path: { learner_id: learnerId }, query: { start, limit: HISTORY_PAGE } },
    }),
  );
}

/** Appends one event, only if the history still has `expectedLen` events (else 409: someone else wrote). */
export async function appendEvent(
  learnerId: string,
  task: string,
  outcome: number,
  expectedLen: number,
): Promise<AppendResult> {
  return call(
    api.POST("/v1/learners/{learner_id}/events", {
      params: { path: { learner_id: learnerId } },
      body: { events: [{ task, outcome }], expected_history_len: expectedLen },
    }),
  );
}

export async function listTasks(): Promise<string[]> {
  return (await call(api.GET("/v1/tasks"))).tasks;
}

export async function predict(learnerId: string, tasks: string[]): Promise<Predictions> {
  return call(
    api.POST("/v1/learners/{learner_id}/predictions", {
      params: { path: { learner_id: learnerId } },
      body: { tasks },
    }),
  );
}

/** Rolls each sequence out: `expected` feeds back each prediction, `sample` a seeded Bernoulli draw. */
export async function forecast(
  learnerId: string,
  sequences: string[][],
  feedback: "expected" | "sample",
  seed?: number,
): Promise<Forecast> {
  return call(
    api.POST("/v1/learners/{learner_id}/forecasts", {
      params: { path: { learner_id: learnerId } },
      body: { task_sequences: sequences, feedback, seed: feedback === "sample" ? seed : undefined },
    }),
  );
}

export async function searchCurriculum(
  learnerId: string,
  request: CurriculumSearchRequest,
): Promise<CurriculumSearch> {
  return call(
    api.POST("/v1/learners/{learner_id}/curricula:search", {
      params: { path: { learner_id: learnerId } },
      body: request,
    }),
  );
}
