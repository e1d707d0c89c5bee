import * as d3 from "d3";
import { useEffect, useRef } from "react";
import type { AttentionGrid as Grid } from "../api/client";
import type { Pair } from "../state";
import { has } from "../state";

const color = d3.scaleSequential(d3.interpolateBlues).domain([0, 1]);
const BADGE: Record<string, string> = {
  "previous-token": "P",
  induction: "I",
  "duplicate-token": "D",
  "first-token": "F",
  self: "S",
  broad: "B",
};

function Thumb({ values, size }: { values: number[]; size: number }) {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const ctx = ref.current?.getContext("2d", { willReadFrequently: false });
    if (!ctx) return;
    const img = ctx.createImageData(size, size);
    values.forEach((v, i) => {
      const c = d3.rgb(color(Math.sqrt(Math.max(0, v))));
      img.data.set([c.r, c.g, c.b, 255], i * 4);
    });
    ctx.putImageData(img, 0, 0);
  }, [values, size]);
  return <canvas ref={ref} width={size} height={size} />;
}

// Layers x heads small multiples. Click: open the head. Right-click (or the Ablate button): toggle ablation.
export function AttentionGrid(props: {
  grid: Grid;
  ablated: Pair[];
  selected: Pair | null;
  onSelect: (p: Pair) => void;
  onToggle: (p: Pair) => void;
}) {
  const { grid } = props;
  const badges = new Map(grid.badges.map((b) => [`${b.layer}.${b.head}`, b]));
  return (
    <div className="grid-wrap">
      <table className="attn-grid" data-testid="attention-grid">
        <thead>
          <tr>
            <th />
            {Array.from({ length: grid.n_heads }, (_, h) => (
              <th key={h}>H{h}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {grid.thumbs.map((row, l) => (
            <tr key={l}>
              <th>L{l}</th>
              {row.map((values, h) => {
                const p: Pair = [l, h];
                const b = badges.get(`${l}.${h}`);
                const sel = props.selected && props.selected[0] === l && props.selected[1] === h;
                return (
                  <td key={h}>
                    <button
                      type="button"
                      className={`cell${has(props.ablated, p) ? " ablated" : ""}${sel ? " selected" : ""}`}
                      data-testid="head-cell"
                      data-layer={l}
                      data-head={h}
                      title={`L${l}H${h}${b ? ` · ${b.kind} ${b.score.toFixed(2)}` : ""} · click: inspect, right-click: ablate`}
                      onClick={(e) => (e.shiftKey || e.altKey ? props.onToggle(p) : props.onSelect(p))}
                      onContextMenu={(e) => {
                        e.preventDefault();
                        props.onToggle(p);
                      }}
                    >
                      <Thumb values={values} size={grid.size} />
                      {b && <span className={`badge ${b.kind}`}>{BADGE[b.kind] ?? "?"}</span>}
                    </button>
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
      <p className="hint">
        Head types{grid.badges[0]?.source === "classifier" ? " (classifier, random repeated tokens)" : " (this prompt)"}: P previous-token, I induction, D
        duplicate-token, F first-token, S self, B broad. Click a head to inspect it; right-click (or shift-click) to ablate it; crossed cells are ablated.
      </p>
    </div>
  );
}
