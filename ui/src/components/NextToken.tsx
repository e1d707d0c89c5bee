import { useMemo } from "react";
import type { RunResponse } from "../api/client";
import { showToken } from "../state";
import { Plot } from "./Plot";

// Top-k next tokens with the interventions beside the plain run; the table carries the exact numbers.
export function NextToken({ run, intervened }: { run: RunResponse; intervened: boolean }) {
  const data = useMemo(() => {
    const labels = run.top.map((t) => showToken(t.token)).reverse();
    const traces: Partial<Plotly.PlotData>[] = [
      {
        type: "bar",
        orientation: "h",
        name: intervened ? "with interventions" : "next token",
        y: labels,
        x: run.top.map((t) => t.prob).reverse(),
        marker: { color: "#3b6fd8" },
      },
    ];
    if (intervened)
      traces.push({
        type: "bar",
        orientation: "h",
        name: "plain run",
        y: labels,
        x: run.top.map((t) => t.base_prob).reverse(),
        marker: { color: "#bbb" },
      });
    return traces;
  }, [run, intervened]);
  return (
    <>
      <Plot
        testid="next-token-chart"
        data={data}
        layout={{ barmode: "group", xaxis: { title: { text: "probability" } }, yaxis: { type: "category", automargin: true }, showlegend: intervened, legend: { orientation: "h", y: -0.2 } }}
        height={300}
      />
      <details>
        <summary>
          numbers (KL vs plain run {run.kl.toFixed(4)} nats; server {run.timings.compute_ms.toFixed(1)} ms
          {run.timings.first_layer !== null ? `, recomputed ${run.timings.recomputed_layers} layers from L${run.timings.first_layer}` : ""})
        </summary>
        <table className="numbers" data-testid="next-token-table">
          <thead>
            <tr>
              <th>token</th>
              <th>prob</th>
              <th>logit</th>
              <th>Δ prob</th>
              <th>Δ logit</th>
            </tr>
          </thead>
          <tbody>
            {run.top.map((t) => (
              <tr key={t.token_id} data-testid="next-token-row" data-token-id={t.token_id} data-prob={t.prob} data-logit={t.logit}>
                <td>{showToken(t.token)}</td>
                <td>{t.prob.toFixed(4)}</td>
                <td>{t.logit.toFixed(3)}</td>
                <td className={t.delta_prob >= 0 ? "up" : "down"}>{t.delta_prob.toFixed(4)}</td>
                <td>{t.delta_logit.toFixed(3)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </>
  );
}
