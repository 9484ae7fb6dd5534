// The job kinds (libs/jobs/src/lyceum_jobs/kinds.py) with a small example config each, to start the JSON
// editor from. The dfm_pretrain and lm_pretrain examples are SubmitJobRequest's OpenAPI examples; the others
// follow the config models (libs/jobs/src/lyceum_jobs/configs.py, gating.py) and name what the local stack
// has: the demo LM `lm-demo`, its adapter `lm-demo-tutor`, the SFT example rows under examples/sft/.
import type { Schemas } from "../../api/client";

export type KindName = Schemas["SubmitJobRequest"]["kind"];
export type QueueName = NonNullable<Schemas["SubmitJobRequest"]["queue"]>;

export interface KindInfo {
  name: KindName;
  summary: string;
  queue: QueueName;
  example: Record<string, unknown>;
}

export const QUEUES: QueueName[] = ["gpu", "cpu"];

export const KINDS: KindInfo[] = [
  {
    name: "dfm_pretrain",
    summary: "pretrain a DFM on learner histories",
    queue: "gpu",
    example: {
      dataset: { format: "simulated", n_learners: 500 },
      model: { d_model: 64, n_layer: 2 },
      train: { steps: 300, batch_size: 32, lr: 0.003 },
      register_as: "dfm-demo",
    },
  },
  {
    name: "lm_pretrain",
    summary: "pretrain the gated TransformerLM on a text corpus",
    queue: "gpu",
    example: { corpus: { paths: ["data/corpus.txt"] }, train: { steps: 500, seq_len: 128 } },
  },
  {
    name: "sft",
    summary: "fine-tune a language model on instructions or chats (LoRA, QLoRA or full)",
    queue: "gpu",
    example: {
      base: { model: "lm-demo@production" },
      data: { format: "chat", train: "examples/sft/tutor_style.jsonl", max_seq_length: 256 },
      lora: { r: 8 },
      train: { method: "lora", max_steps: 20, batch_size: 4 },
      register_as: "lm-demo-sft",
    },
  },
  {
    name: "sdpo",
    summary: "distil feedback into a user's adapter (self-distillation), gated before it is served",
    queue: "gpu",
    example: {
      adapter: "lm-demo-tutor",
      parent: 1,
      feedback: ["fb-00000000000000000000000000000000"],
      train: { steps: 1 },
    },
  },
  {
    name: "eval",
    summary: "evaluate models or adapters: preference compliance, capability, collapse; plots",
    queue: "gpu",
    example: {
      models: ["lm-demo@production", "lm-demo-tutor@latest"],
      preferences: ["no_emoji", "concise"],
      prompts: 4,
      max_new_tokens: 32,
    },
  },
  {
    name: "gating_ppo",
    summary: "train a gating policy (PPO) modulating a frozen LM's sampling and gates; ablation at the end",
    queue: "gpu",
    example: {
      lm: "lm-demo@production",
      prompts: "data/stories.txt",
      iterations: 20,
      envs: 8,
      episode_length: 16,
      ablation: { episodes: 8, seeds: [0, 1] },
      register_as: "gating-demo",
    },
  },
];

export function kindInfo(name: string): KindInfo | undefined {
  return KINDS.find((k) => k.name === name);
}

export function exampleText(name: string): string {
  return JSON.stringify(kindInfo(name)?.example ?? {}, null, 2);
}
