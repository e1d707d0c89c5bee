import { useQuery } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import type { GraphNode } from "../api/client";
import { api } from "../api/client";
import { GraphView } from "../components/GraphView";
import { HeadHeatmap } from "../components/HeadHeatmap";
import { Panel } from "../components/Panel";
import { PrepareBanner, usePrepare } from "../components/PrepareStatus";
import { Plot } from "../components/Plot";
import { href, navigate } from "../router";
import { Attribution } from "./Attribution";

// Circuit discovery on a shipped contrastive task: #/circuit/<task>/<edges>/<steps>/<pairs>/<random draws>/<sizes>.
// EAP-IG scores every edge; the faithfulness curve comes from real mean-ablation forwards, beside random circuits.

interface CurveRow {
  n_edges: number;
  fraction: number;
  faithfulness: number;
  random_mean: number;
  random_min: number;
  random_max: number;
}
const errText = (e: unknown) => (e ? (e as Error).message : null);

/** The Circuits view: task circuits (EAP-IG) and attribution graphs over transcoders (#/circuit/attribution). */
export function Circuit({ rest }: { rest: string[] }) {
  const attribution = rest[0] === "attribution";
  return (
    <>
      <nav className="tabs" aria-label="circuit kinds">
        <a href={href("circuit")} className={attribution ? "" : "active"} data-testid="circuit-tab-task">
          task circuit (EAP-IG)
        </a>
        <a href={href("circuit", "attribution")} className={attribution ? "active" : ""} data-testid="circuit-tab-attribution">
          attribution graph (transcoders)
        </a>
      </nav>
      {attribution ? <Attribution /> : <TaskCircuit rest={rest} />}
    </>
  );
}

function TaskCircuit({ rest }: { rest: string[] }) {
  const task = rest[0] || "ioi";
  const asked = rest.length >= 2;
  const edges = Number(rest[1] ?? 200);
  const steps = Number(rest[2] ?? 5);
  const pairs = rest[3] && rest[3] !== "all" ? Number(rest[3]) : null;
  const draws = Number(rest[4] ?? 3);
  const sizes = rest[5] ? rest[5].split(",").map(Number).filter((x) => x > 0) : null;
  const [selected, setSelected] = useState<GraphNode | null>(null);
  const prep = usePrepare();

  const circuit = useQuery({
    queryKey: ["graphs", "circuit", task, edges, steps, pairs, draws, sizes],
    queryFn: () => api.circuit({ task, edges, steps, max_pairs: pairs, random_draws: draws, sizes }),
    enabled: asked,
    retry: false,
    staleTime: Infinity,
  });
  const doc = circuit.data;
  const prompt = (doc?.meta.prompt as string | undefined) ?? "";
  const head = useQuery({
    queryKey: ["head", prompt, selected?.layer, selected?.head],
    queryFn: () => api.head(prompt, selected!.layer!, selected!.head!),
    enabled: !!prompt && selected?.type === "head",
  });
  const curve = (doc?.meta.faithfulness_curve as CurveRow[] | undefined) ?? [];
  const plot = useMemo(
    () => [
      { type: "scatter" as const, mode: "lines+markers" as const, name: "circuit (top-N |EAP-IG|)", x: curve.map((r) => r.n_edges), y: curve.map((r) => r.faithfulness) },
      {
        type: "scatter" as const,
        mode: "lines+markers" as const,
        name: "random circuits (mean, min–max)",
        x: curve.map((r) => r.n_edges),
        y: curve.map((r) => r.random_mean),
        error_y: { type: "data" as const, symmetric: false, array: curve.map((r) => r.random_max - r.random_mean), arrayminus: curve.map((r) => r.random_mean - r.random_min) },
      },
    ],
    [curve],
  );

  return (
    <div className="layout">
      <PrepareBanner status={prep} what="circuits need no SAE and run now; the SAE features of the Features and Provenance views follow." />
      <Panel title="Circuit discovery (EAP-IG)" testid="circuit-controls" wide>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            const fd = new FormData(e.currentTarget);
            navigate("circuit", task, String(fd.get("edges")), String(fd.get("steps")), String(fd.get("pairs") || "all"), String(fd.get("draws")), String(fd.get("sizes") || ""));
          }}
        >
          <label>
            task <b>{task}</b>
          </label>
          <label>
            edges <input name="edges" type="number" min={1} defaultValue={edges} data-testid="circuit-edges" />
          </label>
          <label>
            IG steps <input name="steps" type="number" min={1} max={64} defaultValue={steps} />
          </label>
          <label>
            pairs <input name="pairs" type="number" min={1} defaultValue={pairs ?? ""} placeholder="all" />
          </label>
          <label>
            random draws <input name="draws" type="number" min={0} max={20} defaultValue={draws} />
          </label>
          <label>
            curve sizes <input name="sizes" defaultValue={sizes?.join(",") ?? ""} placeholder="default" size={16} />
          </label>
          <button type="submit" data-testid="circuit-go">
            find circuit
          </button>
          <span className="hint">Minutes on a CPU for the full task; the result is kept per setting.</span>
        </form>
        {doc && (
          <p className="hint" data-testid="circuit-summary">
            {doc.title} · clean metric {Number(doc.meta.clean_metric).toFixed(3)} · all ablated {Number(doc.meta.empty_metric).toFixed(3)}
          </p>
        )}
      </Panel>
      {asked && (
        <Panel title={doc?.title ?? "circuit"} testid="circuit-graph" loading={circuit.isFetching} error={errText(circuit.error)} wide>
          {doc && <GraphView doc={doc} onSelect={setSelected} selected={selected?.id ?? null} />}
        </Panel>
      )}
      {doc && (
        <Panel title="Faithfulness: logit difference recovered (mean ablation outside the circuit)" testid="circuit-curve">
          <Plot data={plot} height={300} layout={{ xaxis: { type: "log", title: { text: "edges kept" } }, yaxis: { title: { text: "fraction recovered" } }, legend: { orientation: "h" } }} />
        </Panel>
      )}
      {doc && (
        <Panel title={selected ? `node: ${selected.label}` : "node"} testid="circuit-node">
          {!selected && <p className="hint">Click a head for its attention pattern on the task's first prompt.</p>}
          {selected && (
            <p className="mono">
              {selected.label} · summed |score| {(selected.attribution ?? 0).toPrecision(3)}
            </p>
          )}
          {head.data && <HeadHeatmap head={head.data} />}
        </Panel>
      )}
    </div>
  );
}
