import { useCallback, useEffect, useRef, useState } from "react";
import { flushSync } from "react-dom";
import { ApiError } from "../../api/client";
import { streamChat, type ChatMessage, type ChatSettings, type StreamedAnswer } from "./api";

export interface StreamState {
  answer: StreamedAnswer | undefined;
  streaming: boolean;
  stopped: boolean;
  error: ApiError | undefined;
}

const IDLE: StreamState = { answer: undefined, streaming: false, stopped: false, error: undefined };

/** One streamed chat answer at a time: `start` streams it (each chunk rendered as it is read, so the text
 * grows token by token), `stop` aborts it, `reset` clears it. A newer `start` supersedes an older one. */
export function useStream() {
  const [state, setState] = useState<StreamState>(IDLE);
  const controller = useRef<AbortController | null>(null);

  useEffect(() => () => controller.current?.abort(), []);

  const start = useCallback(
    async (model: string, messages: ChatMessage[], settings: ChatSettings): Promise<StreamState> => {
      controller.current?.abort();
      const mine = new AbortController();
      controller.current = mine;
      const current = () => controller.current === mine;
      const first: StreamedAnswer = { text: "", model, completionId: null, finishReason: null };
      setState({ answer: first, streaming: true, stopped: false, error: undefined });
      let end: StreamState;
      try {
        const answer = await streamChat(model, messages, settings, mine.signal, (partial) => {
          // one render per chunk: React would otherwise batch the chunks of one network read together
          if (current()) flushSync(() => setState((s) => ({ ...s, answer: partial })));
        });
        end = { answer, streaming: false, stopped: mine.signal.aborted, error: undefined };
      } catch (e) {
        const error = e instanceof ApiError ? e : new ApiError(String((e as Error)?.message ?? e), 0);
        end = { answer: undefined, streaming: false, stopped: false, error };
      }
      if (current()) {
        controller.current = null;
        setState(end);
      }
      return end;
    },
    [],
  );

  const stop = useCallback(() => controller.current?.abort(), []);
  const reset = useCallback(() => {
    controller.current?.abort();
    controller.current = null;
    setState(IDLE);
  }, []);

  return { ...state, start, stop, reset };
}
