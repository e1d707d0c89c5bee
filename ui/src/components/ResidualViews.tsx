import { useCallback, useMemo } from "react";
import type { Attribution, Residual } from "../api/client";
import { Plot } from "./Plot";

// Norm of the last token's residual stream across layers (and the plain run when intervened).
export function ResidualNorms({ res }: { res: Residual }) {
  const data = useMemo(() => {
    const last = (rows: number[][]) => rows.map((r) => r[r.length - 1]);
    const mean = (rows: number[][]) => rows.map((r) => r.reduce((a, b) => a + b, 0) / r.length);
    const t: Partial<Plotly.PlotData>[] = [
      { type: "scatter", mode: "lines+markers", name: "last token", x: res.labels, y: last(res.norms), line: { color: "#3b6fd8" } },
      { type: "scatter", mode: "lines", name: "mean over positions", x: res.labels, y: mean(res.norms), line: { color: "#8aa", dash: "dot" } },
    ];
    if (res.baseline_norms)
      t.push({ type: "scatter", mode: "lines", name: "last token, plain run", x: res.labels, y: last(res.baseline_norms), line: { color: "#bbb" } });
    return t;
  }, [res]);
  return <Plot testid="residual-norm-chart" data={data} height={260} layout={{ yaxis: { title: { text: "‖resid‖" } }, legend: { orientation: "h", y: -0.25 } }} />;
}

// 3D PCA trajectory of the last token's residual stream through the layers.
export function PcaTrajectory({ res }: { res: Residual }) {
  const data = useMemo(() => {
    const trace = (pts: number[][], name: string, color: string): Partial<Plotly.PlotData> => ({
      type: "scatter3d",
      mode: "text+lines+markers",
      name,
      x: pts.map((p) => p[0]),
      y: pts.map((p) => p[1]),
      z: pts.map((p) => p[2]),
      text: res.pca.labels.map((l, i) => (i % 5 === 0 || i === pts.length - 1 ? l : "")),
      marker: { size: 3, color },
      line: { color, width: 4 },
    });
    const t = [trace(res.pca.points, res.pca.baseline_points ? "with interventions" : "last token", "#3b6fd8")];
    if (res.pca.baseline_points) t.push(trace(res.pca.baseline_points, "plain run", "#aaa"));
    return t;
  }, [res]);
  const ev = res.pca.explained.map((e) => `${(100 * e).toFixed(0)}%`);
  return (
    <Plot
      testid="pca-chart"
      data={data}
      height={340}
      layout={{
        margin: { l: 0, r: 0, t: 0, b: 0 },
        scene: { xaxis: { title: { text: `PC1 ${ev[0]}` } }, yaxis: { title: { text: `PC2 ${ev[1]}` } }, zaxis: { title: { text: `PC3 ${ev[2]}` } } },
        legend: { orientation: "h" },
      }}
    />
  );
}

// Direct logit attribution of each attention and MLP output to the predicted token.
export function DirectLogitAttribution({ attr, ablatedMlps, onToggleMlp }: { attr: Attribution; ablatedMlps: number[]; onToggleMlp: (layer: number) => void }) {
  const data = useMemo(
    () => [
      {
        type: "bar" as const,
        x: attr.components.map((c) => c.label),
        y: attr.components.map((c) => c.value),
        marker: {
          color: attr.components.map((c) =>
            c.label.startsWith("mlp") && ablatedMlps.includes(Number(c.label.slice(3))) ? "#c02626" : c.label.startsWith("attn") ? "#3b6fd8" : c.label.startsWith("mlp") ? "#e08a2c" : "#888",
          ),
        },
        hovertemplate: "%{x}: %{y:.3f}<br>click an MLP bar to ablate / restore it<extra></extra>",
      },
    ],
    [attr, ablatedMlps],
  );
  const onClick = useCallback(
    (ev: Plotly.PlotMouseEvent) => {
      const label = String(ev.points[0]?.x ?? "");
      if (label.startsWith("mlp")) onToggleMlp(Number(label.slice(3)));
    },
    [onToggleMlp],
  );
  return <Plot testid="dla-chart" data={data} height={240} onClick={onClick} layout={{ yaxis: { title: { text: "logit contribution" } }, xaxis: { tickangle: -60 } }} />;
}
