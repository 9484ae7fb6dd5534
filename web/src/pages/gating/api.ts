// The gating page's calls: the served language models, the registry's gating policies, and one gated
// generation with its modulation trajectory (`POST /v1/gating/generate`), through the typed client.
import { api, call, type Schemas } from "../../api/client";

export type GatingMode = Schemas["GatingMode"];
export type GatedGeneration = Schemas["SidecarResponse"];
export type TrajectoryStep = Schemas["TrajectoryStep"];
export { listLanguageModels, type LanguageModel } from "../../api/models";

export const POLICY_KIND = "gating_policy";

/** What the form asks for; the fields of other modes are left out of the request. */
export interface GatingForm {
  prompt: string;
  model: string;
  mode: GatingMode;
  modulation: number;
  policy: string;
  temperature: number;
  topK: number;
  seed: number | null;
  maxTokens: number;
}

/** The references a `learned` generation can name: each gating policy by name (its served version), and
 * at each of its aliases. */
export async function listPolicies(): Promise<string[]> {
  const versions = (await call(api.GET("/v1/models"))).models.filter((m) => m.kind === POLICY_KIND);
  const refs = new Set<string>();
  for (const v of versions) {
    refs.add(v.name);
    for (const alias of v.aliases) refs.add(`${v.name}@${alias}`);
  }
  return [...refs].sort();
}

export function generate(form: GatingForm): Promise<GatedGeneration> {
  const { mode } = form;
  return call(
    api.POST("/v1/gating/generate", {
      body: {
        prompt: form.prompt,
        model: form.model || undefined,
        maxTokens: form.maxTokens,
        gatingMode: mode,
        modulation: mode === "fixed" ? form.modulation : undefined,
        policy: mode === "learned" ? form.policy || undefined : undefined,
        temperature: mode === "none" ? form.temperature : undefined,
        topK: mode === "none" && form.topK > 0 ? form.topK : undefined,
        seed: form.seed ?? undefined,
      },
    }),
  );
}
