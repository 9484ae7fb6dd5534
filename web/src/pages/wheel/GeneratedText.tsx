import type { Session } from "./api";
import { percent, tokenInline, tokenLabel } from "./tokens";

/** The text so far: the prompt, then each chosen token highlighted, its probability (under the settings it was
 * shown with) in its tooltip and accessible description. Byte tokens read as their bytes; the whole text as the
 * model decodes it is shown beneath when they occur. */
export function GeneratedText({ session }: { session: Session }) {
  const n = session.generated.length;
  const hasBytes = session.generated.some((e) => !e.token.is_valid_utf8);
  return (
    <section aria-labelledby="text-heading">
      <h2 id="text-heading">Text</h2>
      <p className="wheel-text" data-testid="wheel-text">
        <span className="prompt">{session.prompt}</span>
        {session.generated.map((e, i) => {
          const note =
            `${tokenLabel(e.token)}: ${percent(e.probability)}, ` +
            (e.category === "other" ? "from Other" : "above the threshold") +
            `, rank ${e.rank + 1}` +
            (e.gating ? `, m = ${e.gating.modulation}` : "");
          return (
            <mark
              key={i}
              className={`chosen ${e.category}${e.token.is_valid_utf8 ? "" : " bytes"}`}
              title={note}
              data-testid="chosen-token"
              data-token-id={e.token.id}
            >
              {tokenInline(e.token)}
            </mark>
          );
        })}
      </p>
      <p className="muted" aria-live="polite" data-testid="token-count">
        {n} token{n === 1 ? "" : "s"} chosen · {session.context_len} of {session.max_context_len} context tokens
      </p>
      {n > 0 && (
        <details className="chosen-list">
          <summary>The chosen tokens and their probabilities</summary>
          <ol>
            {session.generated.map((e, i) => (
              <li key={i}>
                <span className={`tok${e.token.is_valid_utf8 ? "" : " bytes"}`}>{tokenLabel(e.token)}</span>{" "}
                {percent(e.probability)}, {e.category === "other" ? "from Other" : "above the threshold"}, rank{" "}
                {e.rank + 1}
                {e.gating ? `, m = ${e.gating.modulation}` : ""}
              </li>
            ))}
          </ol>
        </details>
      )}
      {hasBytes && (
        <p>
          <span className="muted">Decoded together: </span>
          <span className="wheel-text-plain">{session.text}</span>
        </p>
      )}
    </section>
  );
}
