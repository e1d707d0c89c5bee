import { useState } from "react";
import type { TokenLogit } from "../../api/attribution";
import { showToken } from "../../state";
import type { DrawNode } from "../GraphView";

// Interventions from the graph: ablate a node or supernode (activation to zero) or steer it (activation times a
// factor). Every change is sent over the socket at once; the logits and the downstream nodes follow.
export interface GraphIntervention {
  id: string; // the drawn node (a supernode stands for its members)
  label: string;
  mode: "ablate" | "steer";
  value: number;
}

const canIntervene = (n: DrawNode | null) => !!n && (n.type === "feature" || n.type === "supernode");

export function InterventionPanel(props: {
  target: DrawNode | null;
  items: GraphIntervention[];
  onChange: (items: GraphIntervention[]) => void;
  logits: TokenLogit[] | null;
  changed: number;
  pending: boolean;
  error: string | null;
}) {
  const { target, items } = props;
  const [factor, setFactor] = useState(2);
  const add = (mode: "ablate" | "steer") => {
    if (!target) return;
    const rest = items.filter((i) => i.id !== target.id);
    props.onChange([...rest, { id: target.id, label: target.label, mode, value: mode === "ablate" ? 0 : factor }]);
  };
  return (
    <div data-testid="intervene-panel">
      <div className="row">
        <span className="mono">{target ? target.label : "click a feature or supernode"}</span>
        <button type="button" disabled={!canIntervene(target)} onClick={() => add("ablate")} data-testid="intervene-ablate">
          ablate
        </button>
        <label title="multiply the node's activation by this factor">
          × <input type="number" step={0.5} value={factor} onChange={(e) => setFactor(Number(e.target.value))} data-testid="intervene-factor" />
        </label>
        <button type="button" disabled={!canIntervene(target)} onClick={() => add("steer")} data-testid="intervene-steer">
          steer
        </button>
      </div>
      {items.length > 0 && (
        <div className="chips">
          {items.map((i) => (
            <button key={i.id} type="button" className={`chip${i.mode === "steer" ? " steer" : ""}`} onClick={() => props.onChange(items.filter((x) => x.id !== i.id))} data-testid="intervene-chip">
              {i.mode === "ablate" ? "ablate" : `×${i.value}`} {i.label} ✕
            </button>
          ))}
          <button type="button" className="link" onClick={() => props.onChange([])} data-testid="intervene-clear">
            clear all
          </button>
        </div>
      )}
      {props.error && <div className="error">{props.error}</div>}
      {props.logits && (
        <>
          <p className="hint" data-testid="intervene-summary">
            {props.pending ? "updating…" : `${props.changed} downstream nodes changed by more than 5%`}
          </p>
          <table className="table" data-testid="intervene-logits">
            <thead>
              <tr>
                <th className="left">token</th>
                <th>before</th>
                <th>after</th>
                <th>Δ prob</th>
              </tr>
            </thead>
            <tbody>
              {props.logits.map((t, i) => {
                const d = t.prob - (t.base_prob ?? t.prob);
                return (
                  <tr key={i} data-testid="intervene-logit" data-base={t.base_prob ?? ""} data-prob={t.prob}>
                    <td className="left mono">{showToken(t.token)}</td>
                    <td>{t.base_prob != null ? t.base_prob.toFixed(4) : "–"}</td>
                    <td>{t.prob.toFixed(4)}</td>
                    <td className={d >= 0 ? "up" : "down"}>{d >= 0 ? "+" : ""}{d.toFixed(4)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
