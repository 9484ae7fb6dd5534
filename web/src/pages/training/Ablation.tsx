import { asRecord, num } from "./format";

const COLUMNS: [string, string][] = [
  ["reward", "Reward"],
  ["diversity", "Diversity"],
  ["ppl", "Perplexity term"],
];

function percent(change: number): string {
  return `${change >= 0 ? "+" : ""}${(change * 100).toFixed(1)} %`;
}

function meanStd(figure: unknown): string {
  const f = asRecord(figure);
  if (!f || typeof f.mean !== "number") return "–";
  return typeof f.std === "number" ? `${f.mean.toFixed(4)} ± ${f.std.toFixed(4)}` : f.mean.toFixed(4);
}

/** A gating_ppo job's ablation (its result's `ablation`): one row per arm (random, fixed, neutral, learned),
 * mean ± std over the episodes of every seed, and the learned arm against the fixed one — as `lyceum jobs
 * show` prints it. */
export function AblationTable({ result }: { result: Record<string, unknown> }) {
  const ablation = asRecord(result.ablation);
  const arms = asRecord(ablation?.arms);
  if (!ablation || !arms) return null;
  const fixed = ablation.fixed_modulation;
  const change = ablation.learned_vs_fixed;
  const seeds = Array.isArray(ablation.seeds) ? ablation.seeds.join(", ") : "–";
  const best = Object.entries(arms).reduce<[string, number] | null>((top, [arm, figures]) => {
    const mean = asRecord(asRecord(figures)?.reward)?.mean;
    return typeof mean === "number" && (!top || mean > top[1]) ? [arm, mean] : top;
  }, null)?.[0];
  return (
    <section aria-labelledby="ablation-title">
      <h2 id="ablation-title">Ablation</h2>
      <div className="table-wrap">
        <table aria-label="Ablation by arm">
          <thead>
            <tr>
              <th scope="col">Arm</th>
              {COLUMNS.map(([, title]) => (
                <th key={title} scope="col" className="num">
                  {title}
                </th>
              ))}
              <th scope="col" className="num">
                Reward per seed
              </th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(arms).map(([arm, figures]) => {
              const f = asRecord(figures) ?? {};
              const perSeed = Array.isArray(f.per_seed) ? f.per_seed.map(asRecord) : [];
              return (
                <tr key={arm} className={arm === best ? "best" : undefined}>
                  <th scope="row">
                    {arm === "fixed" && typeof fixed === "number" ? `fixed (m=${fixed})` : arm}
                    {arm === best && <span className="badge succeeded"> best</span>}
                  </th>
                  {COLUMNS.map(([key]) => (
                    <td key={key} className="num mono">
                      {meanStd(f[key])}
                    </td>
                  ))}
                  <td className="num mono">
                    {perSeed.map((s) => `${num(s?.seed)}: ${num(s?.reward)}`).join("; ") || "–"}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <p>
        Learned vs fixed:{" "}
        <strong>{typeof change === "number" && Number.isFinite(change) ? percent(change) : "–"}</strong>{" "}
        mean reward; {num(ablation.episodes)} episodes × seeds [{seeds}], {num(ablation.episode_length)} tokens each
        {result.gate_signal === false ? "; gate signal off (sampling only)" : ""}
        {typeof result.lm === "string" ? `; LM ${result.lm}` : ""}.
      </p>
    </section>
  );
}
