import * as d3 from "d3";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { GraphDoc, GraphNode } from "../api/client";
import { showToken } from "../state";

/** What the component draws: a graph document whose nodes may also be client-side supernodes (groups). */
type KnownNode = { [K in keyof GraphNode as string extends K ? never : number extends K ? never : K]: GraphNode[K] };
export type DrawNode = Omit<KnownNode, "type"> & { type: GraphNode["type"] | "supernode"; members?: string[] };
export type DrawDoc = Omit<GraphDoc, "nodes"> & { nodes: DrawNode[] };

// The one graph component for provenance and circuits (D3 lives only here). Force layout with the layer bands
// as strong vertical anchors; node size = attribution, edge width = |weight|, edge colour = sign. Drag pins a
// node (double-click frees it), wheel/drag on the background zooms and pans, hover lights up the node's paths
// (everything upstream and downstream of it), click hands the node to the view (shift/ctrl-click adds it to a
// multiple selection). Overlays that change without a new layout (selection, an intervention's ablated nodes and
// the relative change of every other node) are classes set apart from the layout. Export: JSON, SVG, PNG.

interface SimNode extends d3.SimulationNodeDatum {
  id: string;
  data: DrawNode;
  r: number;
  anchorX: number;
  anchorY: number;
}
interface SimLink extends d3.SimulationLinkDatum<SimNode> {
  source: SimNode;
  target: SimNode;
  weight: number;
  path: string;
}

const TYPE_COLOUR: Record<string, string> = {
  feature: "#4c78a8",
  error: "#9d9d9d",
  head: "#f58518",
  mlp: "#54a24b",
  token: "#b279a2",
  embed: "#b279a2",
  logits: "#e45756",
  supernode: "#72b7b2",
};
const POS = "#2f6fd0";
const NEG = "#d0452f";

function download(name: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Ids of every node upstream and downstream of ``id`` (its paths through the graph). */
function pathsThrough(id: string, edges: { source: string; target: string }[]): Set<string> {
  const up = new Map<string, string[]>();
  const down = new Map<string, string[]>();
  for (const e of edges) {
    (up.get(e.target) ?? up.set(e.target, []).get(e.target)!).push(e.source);
    (down.get(e.source) ?? down.set(e.source, []).get(e.source)!).push(e.target);
  }
  const seen = new Set([id]);
  for (const adj of [up, down]) {
    const stack = [id];
    while (stack.length) {
      for (const n of adj.get(stack.pop()!) ?? []) {
        if (!seen.has(n)) {
          seen.add(n);
          stack.push(n);
        }
      }
    }
  }
  return seen;
}

export interface GraphViewProps<N extends DrawNode> {
  doc: Omit<DrawDoc, "nodes"> & { nodes: N[] };
  /** ``additive``: shift/ctrl/cmd was held (add to or take from a multiple selection) */
  onSelect?: (n: N, additive: boolean) => void;
  selected?: string | null;
  /** a multiple selection (e.g. the nodes to group into a supernode) */
  picked?: ReadonlySet<string>;
  /** nodes an intervention acts on */
  ablated?: ReadonlySet<string>;
  /** relative change of each node's activation under the current intervention (+ up, − down) */
  changes?: ReadonlyMap<string, number>;
  testid?: string;
}

export function GraphView<N extends DrawNode>(props: GraphViewProps<N>) {
  const { doc, onSelect, selected, picked, ablated, changes } = props;
  const svgRef = useRef<SVGSVGElement>(null);
  const boxRef = useRef<HTMLDivElement>(null);
  const [maximised, setMaximised] = useState(false);
  const [hover, setHover] = useState<DrawNode | null>(null);
  const [boxWidth, setBoxWidth] = useState(1000);
  useEffect(() => {
    const el = boxRef.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setBoxWidth(Math.max(480, Math.floor(el.clientWidth))));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const width = maximised ? Math.max(800, window.innerWidth - 40) : boxWidth;
  const height = maximised ? Math.max(600, window.innerHeight - 120) : 640;

  // vertical position of each band: bottom (embeddings) to top (target / logits)
  const bandY = useMemo(() => {
    const bands = [...new Set([...doc.bands.map((b) => b.band), ...doc.nodes.map((n) => n.band)])].sort((a, b) => a - b);
    const used = bands.filter((b) => doc.nodes.some((n) => n.band === b));
    const scale = d3.scalePoint<number>().domain(used.reverse()).range([40, height - 40]).padding(0.3);
    return (b: number) => scale(b) ?? height / 2;
  }, [doc, height]);

  useEffect(() => {
    const svg = d3.select(svgRef.current!);
    svg.selectAll("*").remove();
    const maxAttr = d3.max(doc.nodes, (n) => Math.abs(n.attribution ?? 0)) || 1;
    const maxW = d3.max(doc.edges, (e) => Math.abs(e.weight)) || 1;
    // x: the token position (provenance: the whole prompt's width) or the head index (circuits)
    const xs = doc.nodes.map((n) => n.pos ?? n.head ?? 0);
    const hi = doc.tokens ? doc.tokens.length - 1 : (d3.max(xs) ?? 1);
    const xScale = d3
      .scaleLinear()
      .domain([Math.min(0, d3.min(xs) ?? 0), Math.max(hi, 1)])
      .range([150, width - 170]);
    // labels for the nodes that matter most (every node has its label on hover)
    const labelled = new Set(
      [...doc.nodes]
        .sort((a, b) => Math.abs(b.attribution ?? 0) - Math.abs(a.attribution ?? 0))
        .slice(0, 30)
        .map((n) => n.id),
    );
    const nodes: SimNode[] = doc.nodes.map((n) => {
      const ax = xScale(n.pos ?? n.head ?? 0);
      const ay = bandY(n.band);
      return { id: n.id, data: n, r: 4 + 14 * Math.sqrt(Math.abs(n.attribution ?? 0) / maxAttr), anchorX: ax, anchorY: ay, x: ax, y: ay };
    });
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const links: SimLink[] = doc.edges
      .filter((e) => byId.has(e.source) && byId.has(e.target))
      .map((e) => ({ source: byId.get(e.source)!, target: byId.get(e.target)!, weight: e.weight, path: e.path }));

    const root = svg.append("g").attr("class", "graph-root");
    const bands = root.append("g").attr("class", "bands");
    const shown = new Set(doc.nodes.map((n) => n.band));
    for (const b of doc.bands.filter((b) => shown.has(b.band))) {
      const y = bandY(b.band);
      bands.append("line").attr("x1", 0).attr("x2", width * 4).attr("y1", y).attr("y2", y).attr("stroke", "#eef0f4");
      bands.append("text").attr("x", 6).attr("y", y - 4).attr("class", "band-label").text(b.label);
    }
    const linkSel = root
      .append("g")
      .attr("class", "links")
      .selectAll<SVGLineElement, SimLink>("line")
      .data(links)
      .join("line")
      .attr("stroke", (d) => (d.weight >= 0 ? POS : NEG))
      .attr("stroke-opacity", 0.55)
      .attr("stroke-width", (d) => 0.6 + 6 * (Math.abs(d.weight) / maxW))
      .attr("data-source", (d) => d.source.id)
      .attr("data-target", (d) => d.target.id);
    linkSel.append("title").text((d) => `${d.source.data.label} → ${d.target.data.label}: ${d.weight.toPrecision(4)} (${d.path})`);
    const nodeSel = root
      .append("g")
      .attr("class", "nodes")
      .selectAll<SVGGElement, SimNode>("g")
      .data(nodes)
      .join("g")
      .attr("class", "graph-node")
      .attr("data-id", (d) => d.id)
      .attr("data-type", (d) => d.data.type)
      .attr("data-testid", (d) => `node-${d.data.type}`)
      .style("cursor", "pointer");
    nodeSel
      .append("circle")
      .attr("r", (d) => d.r)
      .attr("fill", (d) => TYPE_COLOUR[d.data.type] ?? "#555")
      .attr("stroke", "#222")
      .attr("stroke-width", 0.8);
    nodeSel
      .append("title")
      .text((d) => `${d.data.label} · attribution ${(d.data.attribution ?? 0).toPrecision(3)}${d.data.members ? ` · ${d.data.members.length} nodes` : ""}`);
    nodeSel
      .filter((d) => labelled.has(d.id))
      .append("text")
      .attr("dx", (d) => d.r + 2)
      .attr("dy", 3)
      .attr("class", "node-label")
      .text((d) => (d.data.type === "token" ? showToken(String(d.data.label)) : d.data.label).slice(0, 28));

    const sim = d3
      .forceSimulation(nodes)
      .force("link", d3.forceLink<SimNode, SimLink>(links).strength(0.02))
      .force("x", d3.forceX<SimNode>((d) => d.anchorX).strength(0.06))
      .force("y", d3.forceY<SimNode>((d) => d.anchorY).strength(1.5))
      .force("collide", d3.forceCollide<SimNode>((d) => d.r + 4).iterations(2))
      .alpha(1)
      .alphaDecay(0.05);
    const tick = () => {
      for (const n of nodes) n.x = Math.max(20, Math.min(width - 20, n.x ?? 0));
      linkSel
        .attr("x1", (d) => d.source.x!)
        .attr("y1", (d) => d.source.y!)
        .attr("x2", (d) => d.target.x!)
        .attr("y2", (d) => d.target.y!);
      nodeSel.attr("transform", (d) => `translate(${d.x},${d.y})`);
    };
    sim.on("tick", tick);
    // settle most of the layout before the first paint, so screenshots and clicks see a stable picture
    sim.tick(200);
    tick();

    nodeSel.call(
      d3
        .drag<SVGGElement, SimNode>()
        .on("start", (ev, d) => {
          if (!ev.active) sim.alphaTarget(0.2).restart();
          d.fx = d.x;
          d.fy = d.y;
        })
        .on("drag", (ev, d) => {
          d.fx = ev.x;
          d.fy = ev.y;
        })
        .on("end", (ev, d) => {
          if (!ev.active) sim.alphaTarget(0);
          // stays where it was dropped: pinned (double-click frees it)
          d3.select(ev.sourceEvent?.target?.closest?.("g.graph-node") ?? null).classed("pinned", true);
          void d;
        }),
    );
    nodeSel.on("dblclick", (ev, d) => {
      d.fx = null;
      d.fy = null;
      d3.select(ev.currentTarget as SVGGElement).classed("pinned", false);
      sim.alpha(0.3).restart();
    });
    nodeSel.on("click", (ev: MouseEvent, d) => onSelect?.(d.data as N, ev.shiftKey || ev.ctrlKey || ev.metaKey));
    nodeSel.on("mouseenter", (_ev, d) => {
      const on = pathsThrough(d.id, doc.edges);
      nodeSel.classed("dim", (n) => !on.has(n.id));
      linkSel.classed("dim", (l) => !(on.has(l.source.id) && on.has(l.target.id)));
      setHover(d.data);
    });
    nodeSel.on("mouseleave", () => {
      nodeSel.classed("dim", false);
      linkSel.classed("dim", false);
      setHover(null);
    });
    svg.call(
      d3
        .zoom<SVGSVGElement, unknown>()
        .scaleExtent([0.2, 8])
        .on("zoom", (ev) => root.attr("transform", ev.transform.toString())),
    );
    svg.on("dblclick.zoom", null);
    return () => {
      sim.stop();
    };
  }, [doc, width, height, bandY, onSelect]);

  useEffect(() => {
    d3.select(svgRef.current!)
      .selectAll<SVGGElement, SimNode>("g.graph-node")
      .classed("selected", (d) => d.id === selected)
      .classed("picked", (d) => !!picked?.has(d.id))
      .classed("ablated", (d) => !!ablated?.has(d.id))
      .classed("changed-up", (d) => !ablated?.has(d.id) && (changes?.get(d.id) ?? 0) > 0.05)
      .classed("changed-down", (d) => !ablated?.has(d.id) && (changes?.get(d.id) ?? 0) < -0.05)
      .attr("data-change", (d) => (changes?.has(d.id) ? changes.get(d.id)!.toFixed(4) : null));
  }, [selected, picked, ablated, changes, doc, width, height]);

  const exportJson = useCallback(() => {
    download(`${doc.kind}.json`, new Blob([JSON.stringify(doc, null, 1)], { type: "application/json" }));
  }, [doc]);
  const svgText = useCallback(() => {
    const el = svgRef.current!.cloneNode(true) as SVGSVGElement;
    el.setAttribute("xmlns", "http://www.w3.org/2000/svg");
    const style = document.createElementNS("http://www.w3.org/2000/svg", "style");
    style.textContent =
      ".band-label{font:11px sans-serif;fill:#6b7280}.node-label{font:10px sans-serif;fill:#222}.dim{opacity:.12}" +
      ".ablated circle{stroke:#c02626;stroke-width:3}.changed-up circle{stroke:#1a6b2d;stroke-width:2.5}.changed-down circle{stroke:#a11;stroke-width:2.5}";
    el.insertBefore(style, el.firstChild);
    return new XMLSerializer().serializeToString(el);
  }, []);
  const exportSvg = useCallback(() => download(`${doc.kind}.svg`, new Blob([svgText()], { type: "image/svg+xml" })), [doc, svgText]);
  const exportPng = useCallback(() => {
    const img = new Image();
    const url = URL.createObjectURL(new Blob([svgText()], { type: "image/svg+xml" }));
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = width * 2;
      c.height = height * 2;
      const ctx = c.getContext("2d")!;
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, c.width, c.height);
      ctx.scale(2, 2);
      ctx.drawImage(img, 0, 0);
      URL.revokeObjectURL(url);
      c.toBlob((b) => b && download(`${doc.kind}.png`, b), "image/png");
    };
    img.src = url;
  }, [doc, svgText, width, height]);

  return (
    <div ref={boxRef} className={`graph-view${maximised ? " maximised" : ""}`} data-testid={props.testid ?? "graph-view"}>
      <div className="row graph-tools">
        <button type="button" onClick={() => setMaximised((m) => !m)} data-testid="graph-maximise">
          {maximised ? "restore" : "maximise"}
        </button>
        <button type="button" onClick={exportJson} data-testid="graph-export-json">
          JSON
        </button>
        <button type="button" onClick={exportSvg} data-testid="graph-export-svg">
          SVG
        </button>
        <button type="button" onClick={exportPng} data-testid="graph-export-png">
          PNG
        </button>
        <span className="hint">
          {doc.nodes.length} nodes · {doc.edges.length} edges · drag pins, double-click frees, wheel zooms · blue +, red −
        </span>
      </div>
      <svg ref={svgRef} width={width} height={height} className="graph-svg" role="img" aria-label={doc.title} />
      <div className="hint graph-hover" data-testid="graph-hover">
        {hover ? `${hover.label} · attribution ${(hover.attribution ?? 0).toPrecision(3)}${hover.value != null ? ` · value ${hover.value.toPrecision(4)}` : ""}` : " "}
      </div>
    </div>
  );
}
