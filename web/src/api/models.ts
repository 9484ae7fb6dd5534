// Calls more than one page makes, defined once.
import { api, call, type Schemas } from "./client";

export type LanguageModel = Schemas["LanguageModelOut"];

/** The language models the samplers serve (base models; the token wheel and gating pages pick from them). */
export async function listLanguageModels(): Promise<LanguageModel[]> {
  return (await call(api.GET("/v1/sampler/models"))).models;
}
