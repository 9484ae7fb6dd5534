import { useMemo } from "react";
import { LineChart, type Series } from "../../components/LineChart";
import { metricGroups, type Point } from "./format";

/** One LineChart per metric group (loss first, then the others), x = the optimizer step. */
export function MetricCharts({ points, unit = "step" }: { points: Point[]; unit?: string }) {
  const charts = useMemo(
    () =>
      metricGroups(points).map((group) => ({
        group,
        series: group.keys.map((key): Series => {
          const with_ = points.filter((p) => key in p.values);
          return { label: key, x: with_.map((p) => p.step), y: with_.map((p) => p.values[key]) };
        }),
      })),
    [points],
  );
  if (!charts.length) return <p className="muted">No metrics reported yet.</p>;
  return (
    <div className="grid charts">
      {charts.map(({ group, series }) => (
        <LineChart
          key={group.id}
          title={group.title}
          series={series}
          xLabel={unit}
          yLabel={group.title}
          height={200}
          testId={`chart-${group.id}`}
        />
      ))}
    </div>
  );
}
