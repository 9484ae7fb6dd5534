import type { Distribution } from "./api";
import { describeWedge, labelFor, labelTransform, wedgePath, type Wedge } from "./geometry";
import { percent } from "./tokens";

const R = 100;

/** The wheel drawn in SVG: a wedge per token above the threshold and one for Other, turning by `rotation`
 * degrees (a CSS transition while `spinning`). Clicking a wedge picks it; keyboard and screen-reader users
 * get the same choices as buttons in the list beside it (`WedgeList`), so the drawing itself is one image. */
export function Wheel(props: {
  dist: Distribution;
  wedges: Wedge[];
  rotation: number;
  spinning: boolean;
  durationMs: number;
  landed: string | null;
  disabled: boolean;
  ready: boolean;
  onPick: (w: Wedge) => void;
}) {
  const { dist, wedges, rotation, spinning, durationMs, landed, disabled, ready, onPick } = props;
  const summary =
    `Token wheel: ${dist.above.length} token${dist.above.length === 1 ? "" : "s"} at or above ` +
    `${+(dist.threshold * 100).toFixed(2)}%` +
    (dist.above.length ? ` (most likely ${describeWedge(wedges[0])})` : "") +
    `, and Other with ${dist.other.count} tokens, ${percent(dist.other.probability)}`;
  return (
    <div className="wheel-box">
      <svg
        className="wheel"
        viewBox="-110 -116 220 226"
        role="img"
        aria-label={summary}
        data-testid="wheel"
        data-wedges={wedges.length}
        data-ready={ready}
        data-context-len={dist.context_len}
      >
        <g
          className={`wheel-rotor${spinning ? " spinning" : ""}`}
          style={{
            transform: `rotate(${rotation}deg)`,
            transitionDuration: spinning ? `${durationMs}ms` : "0ms",
          }}
        >
          <circle r={R} className="wheel-rim" />
          {wedges.map((w) => {
            const label = labelFor(w);
            const place = labelTransform(w, R - 6, rotation);
            return (
              <g
                key={w.key}
                className={`wedge${w.token ? "" : " other"}${landed === w.key ? " landed" : ""}`}
                data-testid={w.token ? "wedge" : "other-wedge"}
                data-token-id={w.token?.id}
                data-start={w.start.toFixed(3)}
                data-end={w.end.toFixed(3)}
                onClick={disabled ? undefined : () => onPick(w)}
              >
                <path d={wedgePath(w, R)} fill={w.color}>
                  <title>{describeWedge(w)}</title>
                </path>
                {label && (
                  <text
                    transform={place.transform}
                    textAnchor={place.anchor}
                    dominantBaseline="central"
                    fontSize={label.size}
                  >
                    {label.text}
                  </text>
                )}
              </g>
            );
          })}
          <circle r={9} className="wheel-hub" />
        </g>
        <path className="wheel-pointer" d="M -7 -114 L 7 -114 L 0 -98 Z" />
      </svg>
    </div>
  );
}
