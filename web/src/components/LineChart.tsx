import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  x: number[];
  y: (number | null)[];
  dash?: boolean;
}

const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000];
const COLORS = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4b5563"];

/** Line chart (uPlot) of one or more series over a numeric x; redraws when the data changes. The figure
 * carries an accessible name and a text summary of each series' last value. */
export function LineChart(props: {
  title: string;
  series: Series[];
  xLabel: string;
  yLabel: string;
  height?: number;
  yRange?: [number, number];
  testId?: string;
}) {
  const { title, series, xLabel, yLabel, height = 240, yRange, testId } = props;
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const xs = Array.from(new Set(series.flatMap((s) => s.x))).sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const columns = series.map((s) => {
      const col: (number | null)[] = new Array(xs.length).fill(null);
      s.x.forEach((x, i) => (col[index.get(x)!] = s.y[i] ?? null));
      return col;
    });
    const data = [xs, ...columns] as uPlot.AlignedData;
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height,
      scales: { x: { time: false }, y: yRange ? { range: yRange } : {} },
      legend: { live: false }, // series names only, no hover read-out under every chart
      // steps, generations, tokens: whole-number ticks when every x is whole
      axes: [{ label: xLabel, incrs: xs.every(Number.isInteger) ? INTEGER_STEPS : undefined }, { label: yLabel }],
      series: [
        { label: xLabel },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          dash: s.dash ? [6, 4] : undefined,
          spanGaps: true,
          points: { show: xs.length < 40 },
        })),
      ],
    };
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(280, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
    };
  }, [series, xLabel, yLabel, height, yRange]);

  useEffect(() => () => plot.current?.destroy(), []);

  const summary = series
    .map((s) => {
      const last = [...s.y].reverse().find((v) => v !== null && v !== undefined);
      return `${s.label}: ${s.x.length} points${last !== undefined ? `, last ${Number(last).toPrecision(4)}` : ""}`;
    })
    .join("; ");
  return (
    <figure className="chart" data-testid={testId} data-points={series.reduce((n, s) => n + s.x.length, 0)}>
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}. ${summary}`} />
    </figure>
  );
}
