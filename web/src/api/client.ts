// The typed API clients: generated from the gateway's OpenAPI documents (`make web`), same origin. The
// API key is entered once (Settings in the header) and sent with every call.
import createClient, { type Middleware } from "openapi-fetch";
import type { components as LyceumComponents, paths as LyceumPaths } from "./lyceum";
import type { components as OpenAIComponents, paths as OpenAIPaths } from "./openai";

export type Schemas = LyceumComponents["schemas"];
export type OpenAISchemas = OpenAIComponents["schemas"];

const KEY_STORAGE = "lyceum.apiKey";

export function getApiKey(): string {
  return localStorage.getItem(KEY_STORAGE) ?? "";
}

export function setApiKey(key: string): void {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

const auth: Middleware = {
  onRequest({ request }) {
    const key = getApiKey();
    if (key) request.headers.set("Authorization", `Bearer ${key}`);
    return request;
  },
};

const origin = window.location.origin;

/** The native API (`/v1/...`). */
export const api = createClient<LyceumPaths>({ baseUrl: origin });
api.use(auth);

/** The OpenAI-compatible mount (`/openai/v1/...`), for the chat. */
export const openai = createClient<OpenAIPaths>({ baseUrl: `${origin}/openai/v1` });
openai.use(auth);

/** An error the API answered (or the network failed with), with the message to show. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field?: string | null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The message of an error body in either shape: native `{error: {code, message, field}}`, OpenAI
 * `{error: {message, param}}`, or a compatibility `{detail}`. */
function describe(body: unknown, status: number): ApiError {
  const error = (body as { error?: { message?: string; field?: string | null; param?: string | null } })?.error;
  if (error?.message) return new ApiError(error.message, status, error.field ?? error.param);
  const detail = (body as { detail?: unknown })?.detail;
  if (typeof detail === "string") return new ApiError(detail, status);
  return new ApiError(`request failed with HTTP ${status}`, status);
}

/** Unwraps an openapi-fetch result: the data, or a thrown ApiError carrying the API's own message. */
export async function call<T>(
  pending: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await pending;
  } catch (e) {
    throw new ApiError(`cannot reach the gateway (${(e as Error).message})`, 0);
  }
  if (result.error !== undefined || !result.response.ok) throw describe(result.error, result.response.status);
  return result.data as T;
}

/** For a streamed call made with `parseAs: "stream"`: the response, or a thrown ApiError from its body. */
export async function streamed(
  pending: Promise<{ data?: unknown; error?: unknown; response: Response }>,
): Promise<Response> {
  let result: { error?: unknown; response: Response };
  try {
    result = await pending;
  } catch (e) {
    throw new ApiError(`cannot reach the gateway (${(e as Error).message})`, 0);
  }
  if (!result.response.ok) {
    let body: unknown = result.error;
    try {
      body = await result.response.json();
    } catch {
      /* the body was read or is not JSON */
    }
    throw describe(body, result.response.status);
  }
  return result.response;
}
