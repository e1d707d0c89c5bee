import { useEffect, useState } from "react";

// Pruning by cumulative influence (circuit-tracer's definitions): keep the nodes that carry ``node`` of the
// logits' influence and the edges that carry ``edge`` of it. The sliders move freely; the graph follows once a
// value has stood still for a moment.
export interface Pruning {
  node: number;
  edge: number;
}

export function PruneControls(props: { value: Pruning; onChange: (p: Pruning) => void; shown?: string }) {
  const [draft, setDraft] = useState(props.value);
  useEffect(() => setDraft(props.value), [props.value]);
  useEffect(() => {
    if (draft.node === props.value.node && draft.edge === props.value.edge) return;
    const t = setTimeout(() => props.onChange(draft), 250);
    return () => clearTimeout(t);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [draft]);
  const slider = (key: keyof Pruning, label: string, hint: string) => (
    <>
      <label htmlFor={`prune-${key}`} title={hint}>
        {label}
      </label>
      <input
        id={`prune-${key}`}
        type="range"
        min={0.05}
        max={1}
        step={0.01}
        value={draft[key]}
        onChange={(e) => setDraft((d) => ({ ...d, [key]: Number(e.target.value) }))}
        data-testid={`prune-${key}`}
      />
      <span className="mono">{draft[key].toFixed(2)}</span>
    </>
  );
  return (
    <div data-testid="prune-controls">
      <div className="sliders">
        {slider("node", "node threshold", "keep the nodes that carry this share of the influence on the logits")}
        {slider("edge", "edge threshold", "keep the edges that carry this share of the influence")}
      </div>
      {props.shown && (
        <p className="hint" data-testid="prune-shown">
          {props.shown}
        </p>
      )}
    </div>
  );
}
