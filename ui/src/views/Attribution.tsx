import { keepPreviousData, useMutation, useQuery } from "@tanstack/react-query";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { BuildRequest, InterveneResult, Supernode } from "../api/attribution";
import { attributionApi, InterveneLive } from "../api/attribution";
import type { GraphDoc } from "../api/client";
import { collapse, group, liveGroups, rename, ungroup } from "../attribution/supernodes";
import { AttributionNodeDetail } from "../components/attribution/NodeDetail";
import type { GraphIntervention } from "../components/attribution/InterventionPanel";
import { InterventionPanel } from "../components/attribution/InterventionPanel";
import type { Pruning } from "../components/attribution/PruneControls";
import { PruneControls } from "../components/attribution/PruneControls";
import { QKPanel } from "../components/attribution/QKPanel";
import { SupernodePanel } from "../components/attribution/SupernodePanel";
import type { DrawNode } from "../components/GraphView";
import { GraphView } from "../components/GraphView";
import { Panel } from "../components/Panel";
import { useSession } from "../store";

// Attribution graphs over the transcoder replacement model (#/circuit/attribution): build one for the prompt,
// re-prune it, group nodes into supernodes, decompose a head's QK score, and intervene on nodes with the logits
// and downstream nodes updating live over the socket. The graph itself is drawn by the one GraphView.

const DEFAULT_PROMPT = "The Eiffel Tower is located in the city of";
const errText = (e: unknown) => (e ? (e as Error).message : null);
const fmt = (x: unknown, d = 3) => (typeof x === "number" ? x.toFixed(d) : "–");

export function Attribution() {
  const { prompt, setPrompt, model } = useSession();
  const info = useQuery({ queryKey: ["attribution", "transcoders"], queryFn: attributionApi.transcoders, retry: false });
  const [draft, setDraft] = useState(prompt || DEFAULT_PROMPT);
  const [maxNodes, setMaxNodes] = useState(500);
  const [pruning, setPruning] = useState<Pruning>({ node: 0.8, edge: 0.98 });
  const [asked, setAsked] = useState<BuildRequest | null>(null);

  const built = useQuery({
    queryKey: ["attribution", "graph", asked],
    queryFn: () => attributionApi.build(asked!),
    enabled: !!asked,
    retry: false,
    staleTime: Infinity,
  });
  const gid = built.data?.graph_id ?? "";
  const repruned = !!asked && (pruning.node !== asked.node_threshold || pruning.edge !== asked.edge_threshold);
  const pruned = useQuery({
    queryKey: ["attribution", "prune", gid, pruning.node, pruning.edge],
    queryFn: () => attributionApi.prune(gid, pruning.node, pruning.edge),
    enabled: !!gid && repruned,
    retry: false,
    staleTime: Infinity,
    placeholderData: keepPreviousData,
  });
  const graph: GraphDoc | undefined = (repruned ? (pruned.data ?? built.data) : built.data)?.graph;

  if (info.isError || info.data?.available === false) {
    return (
      <Panel title="Attribution graphs" testid="attr-no-transcoders" wide>
        <p>No transcoders are loaded, so there is no replacement model to build attribution graphs on.</p>
        <p className="hint mono">{errText(info.error) ?? info.data?.detail}</p>
        <p className="hint">
          Train them with <span className="mono">neuroscope train-transcoders</span>, then start the workbench with{" "}
          <span className="mono">neuroscope ui --transcoders DIR</span>.
        </p>
      </Panel>
    );
  }
  const build = () => {
    const text = draft.trim() ? draft : DEFAULT_PROMPT;
    setPrompt(text);
    setAsked({ prompt: text, node_threshold: pruning.node, edge_threshold: pruning.edge, max_feature_nodes: maxNodes });
  };
  const meta = graph?.meta ?? {};
  const scores = (meta.scores ?? {}) as { replacement?: number; completeness?: number };
  return (
    <>
      <Panel title="Attribution graph (transcoder replacement model)" testid="attr-controls" wide>
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            build();
          }}
        >
          <input value={draft} onChange={(e) => setDraft(e.target.value)} size={60} aria-label="prompt" data-testid="attr-prompt" />
          <label>
            max feature nodes <input type="number" min={1} max={7500} value={maxNodes} onChange={(e) => setMaxNodes(Number(e.target.value))} data-testid="attr-max-nodes" />
          </label>
          <button type="submit" data-testid="attr-build" disabled={built.isFetching}>
            build graph
          </button>
          <span className="hint">
            {info.data ? `transcoders: ${info.data.model} · ${info.data.layers.length} layers · ${Object.values(info.data.d_tc)[0] ?? "?"} features each` : "…"}
          </span>
        </form>
        <PruneControls value={pruning} onChange={setPruning} shown={graph ? `${graph.nodes.length} nodes · ${graph.edges.length} edges kept` : undefined} />
        {graph && (
          <p className="hint" data-testid="attr-summary">
            replacement score <b>{fmt(scores.replacement)}</b> · completeness <b>{fmt(scores.completeness)}</b>
            {meta.n_feature_nodes != null && ` · ${String(meta.n_feature_nodes)} feature nodes before pruning`}
          </p>
        )}
      </Panel>
      {asked && (
        <Workspace key={gid || "pending"} gid={gid} pruning={pruning} graph={graph} loading={built.isFetching || pruned.isFetching} error={errText(built.error) ?? errText(pruned.error)} prompt={asked.prompt} nLayers={model?.n_layers ?? 1} nHeads={model?.n_heads ?? 1} />
      )}
    </>
  );
}

/** One built graph: its drawing, supernodes, interventions, QK panel and node detail (reset when a new graph is built). */
function Workspace(props: { gid: string; pruning: Pruning; graph: GraphDoc | undefined; loading: boolean; error: string | null; prompt: string; nLayers: number; nHeads: number }) {
  const { graph, gid } = props;
  const [groups, setGroups] = useState<Supernode[]>([]);
  const [picked, setPicked] = useState<Set<string>>(new Set());
  const [selected, setSelected] = useState<DrawNode | null>(null);
  const [items, setItems] = useState<GraphIntervention[]>([]);
  const [result, setResult] = useState<InterveneResult | null>(null);
  const [pending, setPending] = useState(false);
  const [liveError, setLiveError] = useState<string | null>(null);
  const live = useRef<InterveneLive | null>(null);

  useEffect(() => {
    live.current = new InterveneLive(
      (r) => {
        setResult(r);
        setPending(false);
        setLiveError(null);
      },
      (msg) => {
        setLiveError(msg);
        setPending(false);
      },
    );
    return () => live.current?.close();
  }, []);
  useEffect(() => {
    if (!gid) return;
    if (!items.length) {
      setResult(null);
      return;
    }
    setPending(true);
    // supernodes are sent by id with the spec: the server expands them into their members
    const used = groups.filter((g) => items.some((i) => i.id === g.id));
    live.current?.send(
      gid,
      items.map((i) => ({ node: i.id, mode: i.mode, value: i.value })),
      used.length ? { groups: used.map((g) => ({ ...g, name: g.name.trim() || g.id })) } : null,
    );
    // groups are read when the interventions change; renaming a group does not re-run them
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [gid, items]);

  const auto = useMutation({
    mutationFn: () => attributionApi.supernodes(gid, props.pruning.node, props.pruning.edge),
    onSuccess: (r) => setGroups(r.spec.groups),
  });
  const drawn = useMemo(() => (graph ? collapse(graph, groups) : null), [graph, groups]);
  const shownGroups = useMemo(() => (graph ? liveGroups(graph, groups) : []), [graph, groups]);
  const onSelect = useCallback((n: DrawNode, additive: boolean) => {
    // supernodes group transcoder features (the server's spec holds feature nodes only)
    if (additive && (n.type === "feature" || n.type === "supernode")) {
      setPicked((p) => {
        const next = new Set(p);
        if (next.has(n.id)) next.delete(n.id);
        else next.add(n.id);
        return next;
      });
    } else setSelected(n);
  }, []);
  const { ablated, changes, changed } = useMemo(() => overlays(items, groups, result), [items, groups, result]);

  return (
    <div className="attr-layout">
      <Panel title={graph?.title ?? "attribution graph"} testid="attr-graph" loading={props.loading} error={props.error}>
        {drawn && <GraphView doc={drawn} onSelect={onSelect} selected={selected?.id ?? null} picked={picked} ablated={ablated} changes={changes} />}
      </Panel>
      <div className="side">
        <Panel title={selected ? `node: ${selected.label}` : "node"} testid="attr-node">
          {selected ? <AttributionNodeDetail node={selected} tokens={graph?.tokens ?? []} graphId={gid} /> : <p className="hint">Click a node for its detail; shift-click features to pick them for a supernode.</p>}
        </Panel>
        <Panel title="Interventions" testid="attr-intervene">
          <InterventionPanel target={selected} items={items} onChange={setItems} result={result} changed={changed} pending={pending} error={liveError} />
        </Panel>
        <Panel title="Supernodes" testid="attr-supernodes">
          <SupernodePanel
            groups={shownGroups}
            picked={picked.size}
            onGroup={() => {
              setGroups((g) => group(g, [...picked]));
              setPicked(new Set());
            }}
            onRename={(id, name) => setGroups((g) => rename(g, id, name))}
            onUngroup={(id) => {
              setGroups((g) => ungroup(g, id));
              setItems((it) => it.filter((i) => i.id !== id));
            }}
            onAuto={gid ? () => auto.mutate() : undefined}
            autoBusy={auto.isPending}
          />
          {auto.error && <div className="error">{errText(auto.error)}</div>}
        </Panel>
        <Panel title="QK attribution: why a head attends where it does" testid="attr-qk">
          <QKPanel prompt={props.prompt} tokens={graph?.tokens ?? []} nLayers={props.nLayers} nHeads={props.nHeads} />
        </Panel>
      </div>
    </div>
  );
}

/** The graph's overlays for an intervention result: what is acted on, and each drawn node's relative change. */
function overlays(items: GraphIntervention[], groups: Supernode[], result: InterveneResult | null) {
  const ablated = new Set(items.map((i) => i.id));
  for (const g of groups) if (g.members.some((m) => ablated.has(m))) ablated.add(g.id); // a member is acted on
  const rel = new Map<string, number>();
  for (const n of result?.downstream ?? []) rel.set(n.id, (n.after - n.before) / Math.max(Math.abs(n.before), 1e-6));
  const changes = new Map<string, number>(rel);
  for (const g of groups) {
    const xs = g.members.map((m) => rel.get(m)).filter((x): x is number => x !== undefined);
    if (xs.length) changes.set(g.id, xs.reduce((a, b) => a + b, 0) / xs.length);
  }
  const changed = [...rel.values()].filter((x) => Math.abs(x) > 0.05).length;
  return { ablated, changes, changed };
}
