import type { Distribution } from "./api";
import type { Wedge } from "./geometry";
import { percent, tokenLabel, tokenSpoken } from "./tokens";

/** The wheel's wedges as buttons (most likely first): picking one appends that token. Then the Other bucket:
 * its size and mass, a button to draw from it, and its most likely members (each pickable too). */
export function WedgeList(props: {
  dist: Distribution;
  wedges: Wedge[];
  landed: string | null;
  disabled: boolean;
  onPick: (tokenId: number) => void;
  onDrawOther: () => void;
  onHover: (key: string | null) => void;
}) {
  const { dist, wedges, landed, disabled, onPick, onDrawOther, onHover } = props;
  const tokens = wedges.filter((w) => w.token);
  const other = dist.other;
  return (
    <div className="wedge-list">
      <h3 id="wedges-heading">
        Tokens at or above {+(dist.threshold * 100).toFixed(2)}% ({tokens.length})
      </h3>
      {tokens.length === 0 && <p className="muted">None: every token is in Other at this threshold.</p>}
      <ul aria-labelledby="wedges-heading">
        {tokens.map((w) => (
          <li key={w.key}>
            <button
              type="button"
              className={`wedge-button${landed === w.key ? " landed" : ""}`}
              aria-label={`Pick ${w.spoken}, ${percent(w.probability)}`}
              disabled={disabled}
              onClick={() => onPick(w.token!.id)}
              onFocus={() => onHover(w.key)}
              onBlur={() => onHover(null)}
              onMouseEnter={() => onHover(w.key)}
              onMouseLeave={() => onHover(null)}
            >
              <span className="swatch" style={{ background: w.color }} aria-hidden="true" />
              <span className={`tok${w.token!.is_valid_utf8 ? "" : " bytes"}`}>{w.label}</span>
              <span className="prob">{percent(w.probability)}</span>
            </button>
          </li>
        ))}
      </ul>
      <h3 id="other-heading">
        Other: {other.count} token{other.count === 1 ? "" : "s"}, {percent(other.probability)}
      </h3>
      <div className="row">
        <button
          type="button"
          className={`secondary${landed === "other" ? " landed" : ""}`}
          disabled={disabled || other.count === 0}
          onClick={onDrawOther}
        >
          Draw from Other
        </button>
      </div>
      {other.top.length > 0 && (
        <>
          <p className="muted other-note">Its most likely members (pick one directly):</p>
          <ul className="other-top" aria-labelledby="other-heading">
            {other.top.map((p) => (
              <li key={p.token.id}>
                <button
                  type="button"
                  className="wedge-button small"
                  aria-label={`Pick ${tokenSpoken(p.token)} from Other, ${percent(p.probability)}`}
                  disabled={disabled}
                  onClick={() => onPick(p.token.id)}
                >
                  <span className={`tok${p.token.is_valid_utf8 ? "" : " bytes"}`}>{tokenLabel(p.token)}</span>
                  <span className="prob">{percent(p.probability)}</span>
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
