import { useState } from "react";
import { ApiError } from "../../api/client";
import { Status } from "../../components/Status";
import { adapterName, type ChatMessage, type ChatSettings, type ServedModel } from "./api";
import { Answer } from "./Answer";
import { useStream } from "./useStream";

interface Turn {
  key: number;
  role: "user" | "assistant";
  text: string;
  model?: string; // what was asked for (a base model id or an adapter name)
  completionId?: string | null;
  finishReason?: string | null;
  stopped?: boolean;
}

/** The chat: the turns so far, the answer streaming in, and the box to write the next message. */
export function Conversation(props: {
  model: string;
  models: ServedModel[];
  settings: ChatSettings;
  onSettled: () => void;
}) {
  const { model, models, settings, onSettled } = props;
  const [turns, setTurns] = useState<Turn[]>([]);
  const [draft, setDraft] = useState("");
  const [invalid, setInvalid] = useState<ApiError>();
  const stream = useStream();
  let answers = 0;

  async function send() {
    const text = draft.trim();
    if (!text) {
      setInvalid(new ApiError("Type a message first: an empty message is not sent", 0, "message"));
      return;
    }
    if (!model) {
      setInvalid(new ApiError("Pick a model first", 0, "model"));
      return;
    }
    setInvalid(undefined);
    const user: Turn = { key: Date.now(), role: "user", text };
    const history: ChatMessage[] = [...turns, user]
      .filter((t) => t.text)
      .map((t) => ({ role: t.role, content: t.text }));
    setTurns((ts) => [...ts, user]);
    setDraft("");
    const end = await stream.start(model, history, settings);
    if (end.answer) {
      const a = end.answer;
      const turn: Turn = {
        key: Date.now() + 1,
        role: "assistant",
        text: a.text,
        model,
        completionId: a.completionId,
        finishReason: a.finishReason,
        stopped: end.stopped,
      };
      setTurns((ts) => [...ts, turn]);
      stream.reset();
    }
  }

  return (
    <section aria-labelledby="conversation-title" className="conversation">
      <div className="row spread">
        <h2 id="conversation-title">Conversation</h2>
        <button
          type="button"
          className="secondary"
          onClick={() => {
            stream.reset();
            setTurns([]);
            setInvalid(undefined);
          }}
          disabled={!turns.length && !stream.streaming}
        >
          New chat
        </button>
      </div>
      {turns.length === 0 && !stream.streaming && (
        <p className="muted">No messages yet: pick a model, write a message and send it.</p>
      )}
      <ol className="chat-log" aria-label="Conversation log">
        {turns.map((t) =>
          t.role === "user" ? (
            <li key={t.key} className="msg user">
              <div className="msg-who">You</div>
              <div className="msg-text">{t.text}</div>
            </li>
          ) : (
            <li key={t.key} className="msg assistant">
              <Answer
                label={`answer ${++answers}`}
                model={t.model ?? ""}
                models={models}
                text={t.text}
                completionId={t.completionId ?? null}
                finishReason={t.finishReason ?? null}
                stopped={t.stopped}
                onSettled={onSettled}
              />
            </li>
          ),
        )}
        {stream.streaming && stream.answer && (
          <li className="msg assistant" aria-busy="true">
            <Answer
              label={`answer ${answers + 1}`}
              model={model}
              models={models}
              text={stream.answer.text}
              completionId={null}
              finishReason={null}
              streaming
            />
          </li>
        )}
      </ol>
      <Status error={stream.error} label="The answer failed" />
      <form
        className="composer stack"
        onSubmit={(e) => {
          e.preventDefault();
          void send();
        }}
      >
        <label htmlFor="chat-message">Your message</label>
        <textarea
          id="chat-message"
          rows={3}
          value={draft}
          placeholder={`Message ${adapterName(model) || "the model"} (Enter sends, Shift+Enter for a new line)`}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
              e.preventDefault();
              if (!stream.streaming) void send();
            }
          }}
          aria-describedby="chat-message-error"
        />
        <div id="chat-message-error">
          <Status error={invalid} />
        </div>
        <div className="row">
          <button type="submit" disabled={stream.streaming}>
            Send
          </button>
          <button type="button" className="danger" onClick={stream.stop} disabled={!stream.streaming}>
            Stop
          </button>
          {stream.streaming && (
            <span className="loading" role="status">
              Streaming from {model}…
            </span>
          )}
        </div>
      </form>
    </section>
  );
}
