import type { Attribution } from "../api/client";
import type { Pair } from "../state";
import { has } from "../state";

// The MLP neurons that push the target logit hardest at the last position; click one to ablate / restore it.
export function Neurons({ attr, ablated, onToggle }: { attr: Attribution; ablated: Pair[]; onToggle: (p: Pair) => void }) {
  const max = Math.max(1e-9, ...attr.neurons.map((n) => Math.abs(n.value)));
  // An ablated neuron has no effect left, so it falls out of the ranking: keep it listed to restore it.
  const listed = new Set(attr.neurons.map((n) => `${n.layer}.${n.neuron}`));
  const rows = [
    ...attr.neurons,
    ...ablated.filter((p) => !listed.has(`${p[0]}.${p[1]}`)).map((p) => ({ layer: p[0], neuron: p[1], value: 0, activation: 0 })),
  ];
  return (
    <div className="neurons" data-testid="neuron-list">
      {rows.map((n) => {
        const p: Pair = [n.layer, n.neuron];
        const off = has(ablated, p);
        const w = (50 * Math.abs(n.value)) / max;
        return (
          <button
            key={`${n.layer}.${n.neuron}`}
            type="button"
            className={`neuron${off ? " ablated" : ""}`}
            data-testid="neuron-row"
            data-layer={n.layer}
            data-neuron={n.neuron}
            title={`activation ${n.activation.toFixed(3)}; click to ${off ? "restore" : "ablate"}`}
            onClick={() => onToggle(p)}
          >
            <span className="label">
              L{n.layer} N{n.neuron}
            </span>
            <span className="bar-track">
              <span className={`bar ${n.value >= 0 ? "pos" : "neg"}`} style={n.value >= 0 ? { left: "50%", width: `${w}%` } : { right: "50%", width: `${w}%` }} />
            </span>
            <span className="value">{n.value >= 0 ? "+" : ""}{n.value.toFixed(3)}</span>
          </button>
        );
      })}
    </div>
  );
}
