import { useState } from "react";
import type { InterveneResult } from "../../api/attribution";
import type { DrawNode } from "../GraphView";
import { InterventionResult } from "./InterventionResult";

// Interventions from the graph: ablate a node or supernode (activation to zero) or scale it (activation times a
// factor, i.e. steer it). Every change is sent over the socket at once; the logits and the downstream nodes follow.
export interface GraphIntervention {
  id: string; // the drawn node (a supernode stands for its members)
  label: string;
  mode: "ablate" | "scale";
  value: number;
}

// the replacement model takes interventions on features and error terms (a supernode: on each member)
const canIntervene = (n: DrawNode | null) => !!n && (n.type === "feature" || n.type === "error" || n.type === "supernode");

export function InterventionPanel(props: {
  target: DrawNode | null;
  items: GraphIntervention[];
  onChange: (items: GraphIntervention[]) => void;
  result: InterveneResult | null;
  changed: number;
  pending: boolean;
  error: string | null;
}) {
  const { target, items } = props;
  const [factor, setFactor] = useState(2);
  const add = (mode: "ablate" | "scale") => {
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
        <button type="button" disabled={!canIntervene(target)} onClick={() => add("scale")} data-testid="intervene-steer">
          steer (× factor)
        </button>
      </div>
      {items.length > 0 && (
        <div className="chips">
          {items.map((i) => (
            <button key={i.id} type="button" className={`chip${i.mode === "scale" ? " steer" : ""}`} onClick={() => props.onChange(items.filter((x) => x.id !== i.id))} data-testid="intervene-chip">
              {i.mode === "ablate" ? "ablate" : `×${i.value}`} {i.label} ✕
            </button>
          ))}
          <button type="button" className="link" onClick={() => props.onChange([])} data-testid="intervene-clear">
            clear all
          </button>
        </div>
      )}
      {props.error && <div className="error">{props.error}</div>}
      {props.result && <InterventionResult result={props.result} changed={props.changed} pending={props.pending} />}
    </div>
  );
}
