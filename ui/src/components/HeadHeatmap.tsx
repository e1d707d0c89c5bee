import { useMemo } from "react";
import type { HeadPattern } from "../api/client";
import { showToken } from "../state";
import { Plot } from "./Plot";

// One head's query x key pattern, labelled with the prompt's tokens (indices keep repeated tokens apart).
export function HeadHeatmap({ head }: { head: HeadPattern }) {
  const data = useMemo(() => {
    const idx = head.tokens.map((_, i) => i);
    return [
      {
        type: "heatmap" as const,
        z: head.pattern,
        x: idx,
        y: idx,
        colorscale: "Blues",
        reversescale: true,
        zmin: 0,
        zmax: 1,
        hovertemplate: "query %{y} → key %{x}: %{z:.3f}<extra></extra>",
      },
    ];
  }, [head]);
  const ticks = head.tokens.map(showToken);
  const idx = head.tokens.map((_, i) => i);
  const side = Math.min(560, 160 + 14 * head.tokens.length);
  return (
    <Plot
      testid="head-heatmap"
      data={data}
      height={side}
      layout={{
        margin: { l: 90, r: 10, t: 10, b: 90 },
        xaxis: { tickmode: "array", tickvals: idx, ticktext: ticks, tickangle: -60, title: { text: "key" } },
        yaxis: { tickmode: "array", tickvals: idx, ticktext: ticks, autorange: "reversed", title: { text: "query" } },
      }}
    />
  );
}
