import { useEffect, useState } from "react";
import type { SteeringVector } from "../api/client";
import { api } from "../api/client";
import type { Interventions as IV } from "../state";

// The refusal direction (served with `neuroscope ui --refusal-direction FILE|auto`) as its own slider. It is an
// ordinary steering vector on the server (source "refusal-direction"); what differs is that the UI warns while it
// is active and the server logs every live run that uses it to the workspace's audit file.
export const REFUSAL_SOURCE = "refusal-direction";

export function useRefusalVector(): SteeringVector | null {
  const [vec, setVec] = useState<SteeringVector | null>(null);
  useEffect(() => {
    api.vectors().then(
      (v) => setVec(v.vectors.find((x) => x.source === REFUSAL_SOURCE) ?? null),
      () => setVec(null),
    );
  }, []);
  return vec;
}

export function refusalAlpha(iv: IV, vec: SteeringVector | null): number {
  return vec && iv.steer?.vector === vec.name ? iv.steer.alpha : 0;
}

export function RefusalBanner(props: { iv: IV; vec: SteeringVector | null }) {
  const { iv, vec } = props;
  const alpha = refusalAlpha(iv, vec);
  if (!vec || alpha === 0) return null;
  return (
    <div className="warning refusal-banner" role="alert" data-testid="refusal-banner">
      <b>⚠ Refusal steering is active</b> (α = {alpha.toFixed(2)} along the refusal direction at layer {iv.steer?.layer ?? vec.layer}).{" "}
      {alpha < 0
        ? "Subtracting it suppresses the model's refusals: it may now answer requests it would otherwise decline."
        : "Adding it makes the model refuse, harmless requests included."}{" "}
      Every live run with it is logged to the audit file in the workspace.
    </div>
  );
}

export function RefusalSlider(props: { iv: IV; onChange: (iv: IV) => void; vec: SteeringVector }) {
  const { iv, onChange, vec } = props;
  const alpha = refusalAlpha(iv, vec);
  const set = (a: number) => {
    if (a !== 0) onChange({ ...iv, steer: { vector: vec.name, layer: null, alpha: a } });
    else if (iv.steer?.vector === vec.name) onChange({ ...iv, steer: null });
  };
  return (
    <div className="refusal-steering" data-testid="refusal-steering">
      <label className="slider">
        refusal direction (L{vec.layer}, ‖r‖ {vec.norm.toFixed(1)}): α = {alpha.toFixed(2)}
        <input type="range" data-testid="refusal-alpha" min={-3} max={3} step={0.25} value={alpha} onChange={(e) => set(+e.target.value)} />
      </label>
      {alpha !== 0 && (
        <button type="button" className="link" onClick={() => set(0)}>
          reset
        </button>
      )}
      <span className="muted"> − removes refusals, + induces them; logged while active</span>
    </div>
  );
}
