import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import type { GraphDoc, GraphNode } from "../api/client";
import { api } from "../api/client";
import { FeatureStore } from "../components/FeatureStore";
import { GraphView } from "../components/GraphView";
import { HeadHeatmap } from "../components/HeadHeatmap";
import { Panel } from "../components/Panel";
import { PrepareBanner, usePrepare } from "../components/PrepareStatus";
import { featureViewHref, OpenProvenance, provenanceHref } from "../graphLinks";
import { navigate } from "../router";
import { showToken } from "../state";
import { useSession } from "../store";

// Where a feature comes from: #/provenance/<layer>/<feature>/<position>/<depth> on the session's prompt. Without a
// feature, the most active features at a position are listed, each opening its provenance.

const num = (s: string | undefined, d: number) => (s !== undefined && s !== "" && !Number.isNaN(Number(s)) ? Number(s) : d);
const errText = (e: unknown) => (e ? (e as Error).message : null);

export function Provenance({ rest }: { rest: string[] }) {
  const { prompt } = useSession();
  const prep = usePrepare();
  const suite = useQuery({ queryKey: ["graphs", "suite"], queryFn: api.suite, retry: false });
  const layers = suite.data?.layers ?? [];
  const layer = num(rest[0], layers[layers.length - 1] ?? 0);
  const feature = rest[1] !== undefined && rest[1] !== "" ? Number(rest[1]) : null;
  const position = num(rest[2], -1);
  const depth = num(rest[3], 2);
  const [selected, setSelected] = useState<GraphNode | null>(null);

  const top = useQuery({
    queryKey: ["graphs", "top", prompt, layer, position],
    queryFn: () => api.topFeatures({ prompt, layer, position, k: 12 }),
    enabled: !!prompt && suite.isSuccess && feature === null,
  });
  const graph = useQuery({
    queryKey: ["graphs", "provenance", prompt, layer, feature, position, depth],
    queryFn: () => api.provenance({ prompt, layer, feature: feature!, position, depth, coverage: 0.8, max_parents: 10, max_expand: 8, fold_identity: true }),
    enabled: !!prompt && suite.isSuccess && feature !== null,
    retry: false,
  });

  const banner = <PrepareBanner status={prep} what="provenance graphs open here when it is ready, with no restart." />;
  if (suite.isError) {
    const preparing = prep && ["checking", "waiting", "running"].includes(prep.state);
    return (
      <>
        {banner}
        {!preparing && (
          <div className="error" role="alert" data-testid="provenance-no-suite">
            {errText(suite.error)}
          </div>
        )}
      </>
    );
  }
  if (!prompt) return <p className="muted">Type a prompt and press Run: provenance graphs are computed on it.</p>;

  const go = (l: number, f: number | null, p: number, d: number) => (f === null ? navigate("provenance", l, "", p) : navigate("provenance", l, f, p, d));
  return (
    <div className="layout">
      <Panel title="Provenance of an SAE feature" testid="provenance-controls" wide>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            const fd = new FormData(e.currentTarget);
            const f = String(fd.get("feature") ?? "").trim();
            go(Number(fd.get("layer")), f === "" ? null : Number(f), Number(fd.get("position")), Number(fd.get("depth")));
          }}
        >
          <label>
            layer{" "}
            <select name="layer" defaultValue={layer} data-testid="prov-layer" key={`l${layer}-${layers.length}`}>
              {layers.map((l) => (
                <option key={l} value={l}>
                  {l}
                </option>
              ))}
            </select>
          </label>
          <label>
            feature <input name="feature" type="number" min={0} defaultValue={feature ?? ""} key={`f${feature}`} data-testid="prov-feature" />
          </label>
          <label>
            position <input name="position" type="number" defaultValue={position} key={`p${position}`} data-testid="prov-position" />
          </label>
          <label>
            depth{" "}
            <select name="depth" defaultValue={depth} key={`d${depth}`} data-testid="prov-depth">
              {[1, 2, 3, 4].map((d) => (
                <option key={d}>{d}</option>
              ))}
            </select>
          </label>
          <button type="submit" data-testid="prov-go">
            {feature === null ? "top features" : "graph"}
          </button>
          <span className="hint">suite: {suite.data ? `${suite.data.model} · ${suite.data.hook} · layers ${suite.data.layers.join(", ")}` : "…"}</span>
        </form>
        {feature === null && (
          <TopList layer={layer} position={position} depth={depth} loading={top.isFetching} error={errText(top.error)} data={top.data ?? null} />
        )}
      </Panel>
      {feature !== null && (
        <>
          <Panel title={graph.data?.title ?? `provenance of L${layer} #${feature}`} testid="provenance-graph" loading={graph.isFetching} error={errText(graph.error)} wide>
            {graph.data && <RootSummary doc={graph.data} />}
            {graph.data && <GraphView doc={graph.data} onSelect={setSelected} selected={selected?.id ?? null} />}
          </Panel>
          <Panel title={selected ? `node: ${selected.label}` : "node"} testid="node-detail" wide>
            {selected ? <NodeDetail node={selected} prompt={prompt} depth={depth} /> : <p className="hint">Click a node: a feature shows its detail, a head its attention pattern.</p>}
          </Panel>
        </>
      )}
    </div>
  );
}

function TopList(props: { layer: number; position: number; depth: number; loading: boolean; error: string | null; data: import("../api/client").TopFeatures | null }) {
  const { data } = props;
  if (props.error) return <div className="error">{props.error}</div>;
  if (!data) return <p className="hint">{props.loading ? "encoding…" : ""}</p>;
  return (
    <div data-testid="top-features">
      <p className="hint">
        Most active layer-{data.layer} features at position {data.position} ({showToken(data.tokens[data.position])}):
      </p>
      <table className="table">
        <thead>
          <tr>
            <th>feature</th>
            <th>activation</th>
            <th style={{ textAlign: "left" }}>top tokens</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {data.features.map((f) => (
            <tr key={f.feature}>
              <td className="mono">#{f.feature}</td>
              <td>{f.activation.toFixed(3)}</td>
              <td className="mono" style={{ textAlign: "left" }}>
                {f.top_tokens.map(showToken).join(" ")}
              </td>
              <td>
                <OpenProvenance layer={data.layer} feature={f.feature} position={data.position} depth={props.depth} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RootSummary({ doc }: { doc: GraphDoc }) {
  const target = doc.meta.target as { id: string; layer: number; feature: number; position: number };
  const root = doc.nodes.find((n) => n.id === target.id);
  if (!root) return null;
  const fmt = (x: number | null | undefined, d = 3) => (x == null ? "–" : x.toFixed(d));
  return (
    <p className="hint" data-testid="provenance-summary">
      activation {fmt(root.activation)} · input {fmt(root.value)} · error share {fmt(root.error_share)} · completeness {fmt(root.completeness)} · kept {fmt(root.kept_share)} ·
      layers drawn {new Set(doc.nodes.map((n) => Math.floor(n.band))).size} · {Number(doc.meta.seconds ?? 0).toFixed(2)} s
    </p>
  );
}

function NodeDetail({ node, prompt, depth }: { node: GraphNode; prompt: string; depth: number }) {
  const feature = useQuery({
    queryKey: ["graphs", "feature", node.layer, node.feature],
    queryFn: () => api.suiteFeature(node.layer!, node.feature!),
    enabled: node.type === "feature",
  });
  const head = useQuery({
    queryKey: ["head", prompt, node.layer, node.head],
    queryFn: () => api.head(prompt, node.layer!, node.head!),
    enabled: node.type === "head",
  });
  const stats = (
    <p className="hint mono">
      {node.value != null && `value ${node.value.toPrecision(4)} · `}
      attribution {(node.attribution ?? 0).toPrecision(3)}
      {node.error_share != null && ` · error share ${node.error_share.toFixed(3)} · completeness ${(node.completeness ?? 0).toFixed(3)}`}
    </p>
  );
  if (node.type === "feature") {
    const d = feature.data;
    return (
      <div data-testid="feature-detail">
        {stats}
        <p>
          <b>
            L{node.layer} feature #{node.feature}
          </b>{" "}
          at position {node.pos} · activation {(node.activation ?? 0).toFixed(3)} ·{" "}
          <a className="link" href={provenanceHref(node.layer!, node.feature!, node.pos ?? -1, depth)} data-testid="detail-open-provenance">
            open its provenance
          </a>{" "}
          ·{" "}
          <a className="link" href={featureViewHref(node.layer!, node.feature!)}>
            Features view
          </a>
        </p>
        {feature.error && <div className="error">{errText(feature.error)}</div>}
        {d && <FeatureStore d={d} missing="No feature statistics were computed for this SAE (train-sae-suite without --no-features computes them)." />}
      </div>
    );
  }
  if (node.type === "head") {
    return (
      <div data-testid="head-detail">
        {stats}
        <p>
          head L{node.layer}H{node.head}
          {node.source_pos != null && ` reading position ${node.source_pos} from position ${node.pos}`}
        </p>
        {head.error && <div className="error">{errText(head.error)}</div>}
        {head.data && <HeadHeatmap head={head.data} />}
      </div>
    );
  }
  return (
    <div data-testid="other-detail">
      {stats}
      <p>
        {node.type} {node.label}
      </p>
    </div>
  );
}
