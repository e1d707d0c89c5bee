import { useEffect, useState } from "react";
import type { ModelInfo, SteeringVector } from "../api/client";
import { api } from "../api/client";
import type { Interventions as IV } from "../state";
import { toggle } from "../state";

// The active interventions as removable chips, plus adders for neurons, MLPs and a steering vector.
export function Interventions(props: { model: ModelInfo; iv: IV; onChange: (iv: IV) => void; prompt: string }) {
  const { iv, onChange, model } = props;
  const [neuron, setNeuron] = useState({ layer: 0, index: 0 });
  const [mlp, setMlp] = useState(0);
  const [vectors, setVectors] = useState<SteeringVector[]>([]);
  const [vecError, setVecError] = useState<string | null>(null);
  const [form, setForm] = useState({ name: "happy", positive: "I love this. Wonderful!", negative: "I hate this. Terrible!", layer: Math.floor(model.n_layers / 2) });
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.vectors().then((v) => setVectors(v.vectors), (e) => setVecError(String(e.message)));
  }, []);

  const clamp = (v: number, hi: number) => Math.max(0, Math.min(hi - 1, Math.floor(v || 0)));
  const chips = [
    ...iv.heads.map((p) => ({ key: `h${p}`, label: `head L${p[0]}H${p[1]}`, drop: () => onChange({ ...iv, heads: toggle(iv.heads, p) }) })),
    ...iv.neurons.map((p) => ({ key: `n${p}`, label: `neuron L${p[0]}N${p[1]}`, drop: () => onChange({ ...iv, neurons: toggle(iv.neurons, p) }) })),
    ...iv.mlps.map((l) => ({ key: `m${l}`, label: `MLP L${l}`, drop: () => onChange({ ...iv, mlps: iv.mlps.filter((x) => x !== l) }) })),
  ];
  const steer = iv.steer;
  const vec = vectors.find((v) => v.name === steer?.vector);

  async function createVector() {
    setBusy(true);
    setVecError(null);
    try {
      const v = await api.createVector({ name: form.name, positive: [form.positive], negative: [form.negative], layer: form.layer });
      setVectors((old) => [...old.filter((o) => o.name !== v.name), v]);
      onChange({ ...iv, steer: { vector: v.name, layer: null, alpha: 4 } });
    } catch (e) {
      setVecError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="interventions" data-testid="interventions">
      <div className="chips">
        {chips.length === 0 && !steer && !iv.edits.length && <span className="muted">No interventions: right-click a head in the grid to ablate it.</span>}
        {chips.map((c) => (
          <button key={c.key} type="button" className="chip" onClick={c.drop} title="remove" data-testid="intervention-chip">
            {c.label} ✕
          </button>
        ))}
        {steer && (
          <button type="button" className="chip steer" onClick={() => onChange({ ...iv, steer: null })} data-testid="intervention-chip">
            steer {steer.vector} ×{steer.alpha} ✕
          </button>
        )}
        {iv.edits.map((e) => (
          <button key={e} type="button" className="chip edit" onClick={() => onChange({ ...iv, edits: iv.edits.filter((x) => x !== e) })} title="remove this feature edit" data-testid="intervention-chip">
            edit {e} ✕
          </button>
        ))}
        {(chips.length > 0 || steer || iv.edits.length > 0) && (
          <button type="button" className="link" onClick={() => onChange({ heads: [], neurons: [], mlps: [], steer: null, edits: [] })}>
            clear all
          </button>
        )}
      </div>
      <div className="row">
        <label>
          neuron L<input type="number" min={0} max={model.n_layers - 1} value={neuron.layer} onChange={(e) => setNeuron({ ...neuron, layer: clamp(+e.target.value, model.n_layers) })} />
        </label>
        <label>
          #<input type="number" min={0} max={model.d_mlp - 1} value={neuron.index} onChange={(e) => setNeuron({ ...neuron, index: clamp(+e.target.value, model.d_mlp) })} />
        </label>
        <button type="button" data-testid="add-neuron" onClick={() => onChange({ ...iv, neurons: toggle(iv.neurons, [neuron.layer, neuron.index]) })}>
          ablate neuron
        </button>
        <label>
          MLP L<input type="number" min={0} max={model.n_layers - 1} value={mlp} onChange={(e) => setMlp(clamp(+e.target.value, model.n_layers))} />
        </label>
        <button type="button" data-testid="add-mlp" onClick={() => onChange({ ...iv, mlps: iv.mlps.includes(mlp) ? iv.mlps.filter((x) => x !== mlp) : [...iv.mlps, mlp].sort((a, b) => a - b) })}>
          ablate MLP
        </button>
      </div>
      <div className="steering">
        <label>
          steering vector{" "}
          <select
            data-testid="steer-select"
            value={steer?.vector ?? ""}
            onChange={(e) => onChange({ ...iv, steer: e.target.value ? { vector: e.target.value, layer: null, alpha: steer?.alpha ?? 4 } : null })}
          >
            <option value="">none</option>
            {vectors.map((v) => (
              <option key={v.name} value={v.name}>
                {v.name} (L{v.layer}, ‖v‖ {v.norm.toFixed(1)})
              </option>
            ))}
          </select>
        </label>
        {steer && (
          <label className="slider">
            α = {steer.alpha.toFixed(1)}
            <input
              type="range"
              data-testid="steer-alpha"
              min={-20}
              max={20}
              step={0.5}
              value={steer.alpha}
              onChange={(e) => onChange({ ...iv, steer: { ...steer, alpha: +e.target.value } })}
            />
            {vec && <span className="muted"> at L{steer.layer ?? vec.layer}</span>}
          </label>
        )}
        <details>
          <summary>new vector from contrasting prompts</summary>
          <div className="form">
            <input value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} placeholder="name" />
            <input value={form.positive} onChange={(e) => setForm({ ...form, positive: e.target.value })} placeholder="positive prompt" />
            <input value={form.negative} onChange={(e) => setForm({ ...form, negative: e.target.value })} placeholder="negative prompt" />
            <label>
              layer <input type="number" min={0} max={model.n_layers - 1} value={form.layer} onChange={(e) => setForm({ ...form, layer: clamp(+e.target.value, model.n_layers) })} />
            </label>
            <button type="button" disabled={busy} onClick={createVector}>
              {busy ? "computing…" : "create"}
            </button>
          </div>
        </details>
        {vecError && <div className="error" role="alert">{vecError}</div>}
      </div>
    </div>
  );
}
