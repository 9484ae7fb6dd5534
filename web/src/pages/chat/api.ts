// The chat page's calls: the OpenAI-compatible chat (streamed) and models list, and the native adapters and
// feedback APIs, all through the typed clients.
import { api, ApiError, call, openai, streamed, type OpenAISchemas, type Schemas } from "../../api/client";
import { readEvents } from "../../api/sse";

export type ServedModel = OpenAISchemas["ModelOut"];
export type ChatMessage = OpenAISchemas["ChatMessageIn"];
export type Adapter = Schemas["AdapterOut"];
export type AdapterVersion = Schemas["AdapterVersionOut"];
export type FeedbackItem = Schemas["FeedbackOut"];
export type Job = Schemas["JobOut"];

/** The sampling settings an answer is asked for with. */
export interface ChatSettings {
  maxTokens: number;
  temperature: number;
  seed: number | null;
}

/** One streamed answer as it stands: its text so far, and once it ended the Lyceum completion id. */
export interface StreamedAnswer {
  text: string;
  model: string;
  completionId: string | null;
  finishReason: string | null;
}

/** A `chat.completion.chunk` (the OpenAPI document describes the event stream, not its chunks' shape). */
/** One streamed event: a chunk, or an error the stream ended with. */
type ChatChunk = Partial<OpenAISchemas["ChatCompletionChunk"]> & { error?: OpenAISchemas["OpenAIError"] };

/** The base models the samplers serve and the tenant's adapters (kind `adapter`, with their `base`). */
export async function listModels(): Promise<ServedModel[]> {
  return (await call(openai.GET("/models"))).data;
}

export function isAdapter(model: ServedModel | undefined): boolean {
  return model?.kind === "adapter";
}

/** An adapter's registry name from the id the models list gives (`name`, or `name@ref`). */
export function adapterName(id: string): string {
  return id.split("@")[0];
}

/** Streams the assistant's next turn after `messages` from `model`, calling `onDelta` with the text so far
 * after every chunk; resolves with the whole answer (its `completion_id` arrives in the choice's last chunk).
 * Throws ApiError on an error answered before or during the stream; an abort ends it early (the answer so
 * far, no completion id). */
export async function streamChat(
  model: string,
  messages: ChatMessage[],
  settings: ChatSettings,
  signal: AbortSignal,
  onDelta: (answer: StreamedAnswer) => void,
): Promise<StreamedAnswer> {
  const answer: StreamedAnswer = { text: "", model, completionId: null, finishReason: null };
  let response: Response;
  try {
    response = await streamed(
      openai.POST("/chat/completions", {
        body: {
          model,
          messages,
          max_tokens: settings.maxTokens,
          temperature: settings.temperature,
          seed: settings.seed ?? undefined,
          stream: true,
        },
        parseAs: "stream",
        signal,
      }),
    );
  } catch (e) {
    if (signal.aborted) return answer; // stopped before the first chunk
    throw e;
  }
  try {
    for await (const event of readEvents(response, signal)) {
      if (event.data === "[DONE]") break;
      const chunk = JSON.parse(event.data) as ChatChunk;
      if (chunk.error) throw new ApiError(chunk.error.message ?? "the stream failed", 500, chunk.error.param);
      if (chunk.model) answer.model = chunk.model;
      for (const choice of chunk.choices ?? []) {
        if (choice.index !== 0) continue;
        if (choice.delta?.content) answer.text += choice.delta.content;
        if (choice.completion_id) answer.completionId = choice.completion_id;
        if (choice.finish_reason) answer.finishReason = choice.finish_reason;
      }
      onDelta({ ...answer });
    }
  } catch (e) {
    if (signal.aborted) return answer;
    if (e instanceof ApiError) throw e;
    throw new ApiError(`the stream broke off (${(e as Error).message})`, 0);
  }
  return answer;
}

export function getAdapter(name: string): Promise<Adapter> {
  return call(api.GET("/v1/adapters/{name}", { params: { path: { name } } }));
}

export function submitFeedback(completionId: string, feedback: string, adapter?: string): Promise<FeedbackItem> {
  return call(
    api.POST("/v1/feedback", { body: { completion_id: completionId, feedback, adapter: adapter || undefined } }),
  );
}

export function getFeedback(feedbackId: string): Promise<FeedbackItem> {
  return call(api.GET("/v1/feedback/{feedback_id}", { params: { path: { feedback_id: feedbackId } } }));
}

/** Starts the adapter's `sdpo` job on its pending feedback now (instead of waiting for a batch). */
export function distillNow(adapter: string): Promise<Job> {
  return call(api.POST("/v1/adapters/{name}/distill", { params: { path: { name: adapter } } }));
}
